"""Signed link tokens: the only credential a subscriber ever holds.

Each purpose signs with its own salt, so a "view" token found in a forwarded email cannot be
replayed as a "manage" or "unsubscribe" token. ``version`` lets the caller revoke every link sent
so far by bumping ``Subscriber.token_version``; ``nonce`` (``Subscriber.link_nonce``, random per
row) ties a token to the row it was made for, so a row that gets a deleted row's id never opens
with its links. This module only carries both; ``web.links`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from papermail.errors import PapermailError

SALT_PREFIX = "papermail.token."


class Purpose(StrEnum):
    confirm = "confirm"
    manage = "manage"
    unsubscribe = "unsubscribe"
    view = "view"
    feed = "feed"
    feedback = "feedback"  # one per digest: "more/less like this" and "mute" links
    saved = "saved"  # the reading list's own Atom feed


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    nonce: str | None = None  # None: a token from before nonces (issue 15.1)


class TokenError(PapermailError):
    """A link token is unusable; ``reason`` is "invalid" or "expired" so pages can say which."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _SignedAtSigner(TimestampSigner):
    """A signer with a fixed clock, so tests (and backfills) can sign a token in the past."""

    def __init__(self, *args: Any, issued_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._issued_at = issued_at

    def get_timestamp(self) -> int:
        return self._issued_at


def _serializer(
    secret: str, purpose: Purpose, issued_at: datetime | None = None
) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an empty secret would make every token forgeable")
    if issued_at is None:
        return _current_serializer(secret, Purpose(purpose))
    salt = SALT_PREFIX + Purpose(purpose).value
    return URLSafeTimedSerializer(
        secret,
        salt=salt,
        signer=_SignedAtSigner,
        signer_kwargs={"issued_at": int(issued_at.timestamp())},
    )


@lru_cache(maxsize=64)
def _current_serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    """One per secret and purpose (a digest signs four links; serializers are stateless)."""
    return URLSafeTimedSerializer(secret, salt=SALT_PREFIX + purpose.value)


def make_token(
    secret: str,
    purpose: Purpose,
    subscriber_id: int,
    *,
    version: int = 0,
    nonce: str | None = None,
    extra: dict[str, Any] | None = None,
    issued_at: datetime | None = None,
) -> str:
    """Sign a URL-safe token; ``extra`` must be JSON-serializable (e.g. a digest id)."""
    payload: dict[str, Any] = {"s": subscriber_id, "v": version}
    if nonce:
        payload["n"] = nonce
    if extra:
        payload["x"] = extra
    return str(_serializer(secret, purpose, issued_at).dumps(payload))


def read_token(
    secret: str, purpose: Purpose, token: str, *, max_age: int | None = None
) -> TokenData:
    """Verify signature, purpose and age (seconds); raise ``TokenError`` on anything wrong."""
    try:
        payload = _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError(
            f"this {Purpose(purpose).value} link has expired", reason="expired"
        ) from exc
    except BadData as exc:
        raise TokenError(
            f"this {Purpose(purpose).value} link is not valid", reason="invalid"
        ) from exc
    return _to_data(payload, purpose)


def _to_data(payload: Any, purpose: Purpose) -> TokenData:
    """Reject well-signed but malformed payloads (e.g. from an older token format)."""
    invalid = TokenError(f"this {Purpose(purpose).value} link is not valid", reason="invalid")
    if not isinstance(payload, dict):
        raise invalid
    subscriber_id, version, extra = payload.get("s"), payload.get("v", 0), payload.get("x", {})
    nonce = payload.get("n")
    if not (
        isinstance(subscriber_id, int)
        and not isinstance(subscriber_id, bool)
        and isinstance(version, int)
        and isinstance(extra, dict)
        and (nonce is None or (isinstance(nonce, str) and nonce))
    ):
        raise invalid
    return TokenData(subscriber_id=subscriber_id, version=version, extra=extra, nonce=nonce)
