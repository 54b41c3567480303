"""Link tokens: a token works for its purpose only, and only as signed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from papermail.tokens import Purpose, TokenData, TokenError, make_token, read_token

SECRET = "test-secret-for-tokens"


def test_round_trip_keeps_id_version_and_extra() -> None:
    token = make_token(SECRET, Purpose.view, 42, version=3, extra={"digest": 7})
    assert read_token(SECRET, Purpose.view, token) == TokenData(42, 3, {"digest": 7})


def test_token_is_url_safe() -> None:
    token = make_token(SECRET, Purpose.unsubscribe, 123456789, extra={"d": "x" * 50})
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize("other", [p for p in Purpose if p is not Purpose.manage])
def test_token_of_one_purpose_is_refused_for_another(other: Purpose) -> None:
    token = make_token(SECRET, Purpose.manage, 1)
    with pytest.raises(TokenError) as info:
        read_token(SECRET, other, token)
    assert info.value.reason == "invalid"
    assert str(info.value) == f"this {other} link is not valid"


def test_tampered_token_is_refused() -> None:
    token = make_token(SECRET, Purpose.confirm, 5)
    _payload, timestamp, signature = token.split(".")
    forged = make_token(SECRET, Purpose.confirm, 6).split(".")[0]
    for bad in (
        f"{forged}.{timestamp}.{signature}",
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        "",
        "not-a-token",
    ):
        with pytest.raises(TokenError) as info:
            read_token(SECRET, Purpose.confirm, bad)
        assert info.value.reason == "invalid"


def test_wrong_secret_is_refused() -> None:
    token = make_token(SECRET, Purpose.feed, 9)
    with pytest.raises(TokenError, match="not valid"):
        read_token("another-secret", Purpose.feed, token)


def test_expired_token_says_expired() -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    token = make_token(SECRET, Purpose.confirm, 5, issued_at=two_days_ago)
    with pytest.raises(TokenError) as info:
        read_token(SECRET, Purpose.confirm, token, max_age=86_400)
    assert info.value.reason == "expired"
    assert str(info.value) == "this confirm link has expired"
    # Without a max age (e.g. unsubscribe links must keep working), the same token is fine.
    assert read_token(SECRET, Purpose.confirm, token).subscriber_id == 5
    assert read_token(SECRET, Purpose.confirm, token, max_age=3 * 86_400).subscriber_id == 5


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        make_token("", Purpose.view, 1)
