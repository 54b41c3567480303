"""Link tokens in, subscribers out (and back): every token check the web app makes is here.

Manage, view, feedback, feed and confirm links carry the subscriber's ``token_version`` and die
when it is bumped ("invalidate old links", or a new sign-up of an unconfirmed address).
Every link also carries the subscriber's random ``link_nonce``: a link opens only the row it was
made for, never a new subscriber who got a deleted one's id.
Unsubscribe links do not: an RFC 8058 link in an old mail must always unsubscribe, and
unsubscribing is harmless.
"""

from __future__ import annotations

import hmac
from typing import Any

from sqlmodel import Session

from papermail.models import Digest, Subscriber
from papermail.tokens import Purpose, TokenData, TokenError, make_token, read_token
from papermail.web.context import Web
from papermail.web.pages import PageError

PATHS = {
    Purpose.confirm: "/confirm/{}",
    Purpose.manage: "/manage/{}",
    Purpose.unsubscribe: "/unsubscribe/{}",
    Purpose.view: "/digest/{}",
    Purpose.feed: "/feed/{}.atom",
    Purpose.feedback: "/feedback/{}",
    Purpose.saved: "/saved/{}.atom",
}
NEW_LINK = "/link"
NO_DIGEST = PageError(404, "Digest not found", "This digest does not exist (any more).")


def token_for(
    web: Web,
    purpose: Purpose,
    subscriber_id: int,
    version: int,
    extra: dict[str, Any] | None = None,
    *,
    nonce: str | None = None,
) -> str:
    return make_token(web.secret, purpose, subscriber_id, version=version, nonce=nonce, extra=extra)


def path_for(web: Web, purpose: Purpose, subscriber: Subscriber, **extra: Any) -> str:
    """The app-relative path of a fresh link for `subscriber` (current token version)."""
    assert subscriber.id is not None
    token = token_for(
        web,
        purpose,
        subscriber.id,
        subscriber.token_version,
        extra or None,
        nonce=subscriber.link_nonce,
    )
    return PATHS[purpose].format(token)


def _max_age(web: Web, purpose: Purpose) -> tuple[int | None, str]:
    """Seconds a link of `purpose` works (None: always), and that said in words. Unsubscribe
    links never expire: an old mail must always be able to stop the mail."""
    settings = web.settings
    if purpose is Purpose.confirm:
        hours = settings.confirm_max_age_hours
        return hours * 3600, f"Confirmation links work for {hours} hours."
    if purpose is Purpose.manage:
        days = settings.manage_link_max_age_days
        return days * 86400, f"Links to your settings work for {days} days."
    return None, ""


def open_link(
    web: Web,
    session: Session,
    purpose: Purpose,
    token: str,
    *,
    check_version: bool = True,
) -> tuple[Subscriber, TokenData]:
    """The subscriber a link token names, or a clear 4xx page: 400 for a forged, cut-off or
    cross-purpose token, 410 for an expired or replaced one, 404 when the data was deleted."""
    max_age, lifetime = _max_age(web, purpose)
    again = ("/", "Sign up again") if purpose is Purpose.confirm else (NEW_LINK, "Email me a link")
    try:
        data = read_token(web.secret, purpose, token, max_age=max_age)
    except TokenError as exc:
        if exc.reason == "expired":
            raise PageError(
                410,
                "This link has expired",
                f"{lifetime} Ask for a new one: it comes by email.",
                action_url=again[0],
                action_label=again[1],
            ) from None
        raise PageError(
            400,
            "This link is not valid",
            "It may have been cut off or changed when it was copied. Open it straight from the "
            "email, or ask for a new one.",
            action_url=again[0],
            action_label=again[1],
        ) from None
    subscriber = session.get(Subscriber, data.subscriber_id)
    if subscriber is not None and not _same_row(subscriber, data):
        subscriber = None  # the link's subscriber was deleted; this row only has its id
    if subscriber is None:
        raise PageError(
            404,
            "No subscription here",
            "This subscription does not exist (any more). Its data may have been deleted.",
            action_url="/",
            action_label="Subscribe",
        )
    if check_version and data.version != subscriber.token_version:
        raise PageError(
            410,
            "This link was replaced",
            "Older links stopped working when newer ones were made. Use the newest email from "
            "papermail, or ask for a new link.",
            action_url=again[0],
            action_label=again[1],
        )
    return subscriber, data


def _same_row(subscriber: Subscriber, data: TokenData) -> bool:
    """A token names this row: its nonce matches, or it is an old-format token (no nonce) and
    the row existed before nonces did (rows created since never accept one)."""
    if data.nonce is None:
        return subscriber.legacy_links
    return hmac.compare_digest(data.nonce, subscriber.link_nonce)


def open_digest(
    web: Web, session: Session, purpose: Purpose, token: str
) -> tuple[Subscriber, Digest]:
    """The subscriber and the digest a per-digest link (view, feedback) names: `open_link`'s
    answers, and 404 when the digest is gone or is not that subscriber's."""
    subscriber, data = open_link(web, session, purpose, token)
    digest_id = data.extra.get("d")
    digest = session.get(Digest, digest_id) if isinstance(digest_id, int) else None
    if digest is None or digest.subscriber_id != subscriber.id:
        raise NO_DIGEST
    return subscriber, digest
