"""Operator accounts for the console at /admin: argon2 password hashes, optional TOTP, and the
login check with its lockout.

`authenticate` answers the same way for an unknown username and a wrong password (same message,
an argon2 verification either way), and an unknown username locks after as many tries as a real
one, so the login form does not tell which accounts exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from papermail.errors import PapermailError
from papermail.models import Operator, OperatorRole
from papermail.services.ratelimit import count_hits

MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,99}$")
TOTP_ISSUER = "papermail"


class AccountError(PapermailError):
    """An account command that cannot be done (a taken name, a short password)."""


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's current defaults: a hash made with older parameters is
    rehashed at the next successful login."""
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    """Verified against when the username is unknown, so both cases cost one argon2 run."""
    return hasher().hash("papermail-decoy-password")


def clean_username(raw: str) -> str:
    name = raw.strip().lower()
    if not USERNAME.match(name):
        raise AccountError(
            "a username is 2-100 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def password_stamp(password_hash: str) -> str:
    """A short fingerprint of the stored hash, kept in the session cookie: a new password (or a
    rehash) ends every session opened with the old one."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def totp_uri(operator: Operator) -> str:
    """The otpauth:// URI an authenticator app reads (as a QR code or typed in)."""
    assert operator.totp_secret
    return pyotp.TOTP(operator.totp_secret).provisioning_uri(
        name=operator.username, issuer_name=TOTP_ISSUER
    )


def totp_step(secret: str, code: str, *, now: datetime) -> int | None:
    """The 30 s step whose six-digit code `code` is: this step, or the one before or after
    (clock drift); None for a wrong code."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def get_operator(session: Session, username: str) -> Operator | None:
    if "\x00" in username:  # never a username; PostgreSQL refuses NUL in text
        return None
    return session.exec(
        select(Operator).where(Operator.username == username.strip().lower())
    ).first()


def create_operator(
    session: Session,
    *,
    username: str,
    password: str,
    role: OperatorRole = OperatorRole.viewer,
    totp: bool = False,
) -> Operator:
    """A new account; with `totp` it gets a fresh secret (show `totp_uri` once)."""
    name = clean_username(username)
    if get_operator(session, name) is not None:
        raise AccountError(f"operator {name!r} exists already")
    operator = Operator(
        username=name,
        password_hash=hasher().hash(check_password(password)),
        role=role,
        totp_secret=pyotp.random_base32() if totp else None,
    )
    session.add(operator)
    session.flush()
    return operator


def list_operators(session: Session) -> list[Operator]:
    return list(session.exec(select(Operator).order_by(col(Operator.username))))


def delete_operator(session: Session, username: str) -> bool:
    operator = get_operator(session, username)
    if operator is None:
        return False
    session.delete(operator)
    return True


def reset_password(session: Session, username: str, password: str) -> Operator:
    """A new password (every open session ends) and the lockout lifted."""
    operator = get_operator(session, username)
    if operator is None:
        raise AccountError(f"no operator {username!r}")
    operator.password_hash = hasher().hash(check_password(password))
    operator.failed_logins = 0
    operator.locked_until = None
    session.add(operator)
    return operator


class Outcome(StrEnum):
    ok = "ok"  # signed in (or, with TOTP, the password step passed)
    refused = "refused"  # unknown user or wrong password or code: one message for all
    locked = "locked"  # too many failures: nothing is checked until the lock ends


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    operator: Operator | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Lockout:
    max_failed: int
    window: timedelta


def _failed(session: Session, operator: Operator, lockout: Lockout, now: datetime) -> Attempt:
    """Count a failure; the last allowed one locks the account (and restarts the count)."""
    operator.failed_logins += 1
    if operator.failed_logins >= lockout.max_failed:
        operator.failed_logins = 0
        operator.locked_until = now + lockout.window
        session.add(operator)
        return Attempt(Outcome.locked, operator, operator.locked_until)
    session.add(operator)
    return Attempt(Outcome.refused, operator)


def _locked(operator: Operator, now: datetime) -> bool:
    return operator.locked_until is not None and operator.locked_until > now


def authenticate(
    engine: Engine,
    session: Session,
    *,
    username: str,
    password: str,
    lockout: Lockout,
    now: datetime,
    redis_url: str = "",
) -> Attempt:
    """The password step. On success the lockout count restarts, `last_login_at` is set when
    no TOTP step follows, and a hash made with older argon2 parameters is replaced."""
    operator = get_operator(session, username)
    if operator is None:
        _verify(_decoy_hash(), password)
        key = "admin-user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()[:40]
        over = count_hits(
            engine,
            [(key, lockout.max_failed - 1)],
            window=lockout.window,
            now=now,
            redis_url=redis_url,
        )
        return Attempt(Outcome.locked if over else Outcome.refused)
    if _locked(operator, now):
        return Attempt(Outcome.locked, operator, operator.locked_until)
    if not _verify(operator.password_hash, password):
        return _failed(session, operator, lockout, now)
    if hasher().check_needs_rehash(operator.password_hash):
        operator.password_hash = hasher().hash(password)
    operator.failed_logins = 0
    operator.locked_until = None
    if not operator.totp_secret:
        operator.last_login_at = now
    session.add(operator)
    return Attempt(Outcome.ok, operator)


def second_factor(
    session: Session, operator: Operator, *, code: str, lockout: Lockout, now: datetime
) -> Attempt:
    """The TOTP step: a wrong or already used code counts toward the same lockout as a wrong
    password."""
    if _locked(operator, now):
        return Attempt(Outcome.locked, operator, operator.locked_until)
    assert operator.totp_secret
    step = totp_step(operator.totp_secret, code, now=now)
    if step is None or step <= (operator.totp_last_step or -1):  # a code works once (RFC 6238)
        return _failed(session, operator, lockout, now)
    operator.totp_last_step = step
    operator.failed_logins = 0
    operator.last_login_at = now
    session.add(operator)
    return Attempt(Outcome.ok, operator)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
