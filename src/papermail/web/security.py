"""CSRF tokens, security headers and the client address: what every route relies on.

CSRF: session-less HMAC tokens. Each form carries ``<issued>.<hmac(secret, binding, issued)>``.
On pages reached through a link token (manage, unsubscribe, confirm) the binding is that link
token, so a form value only works with the URL it was rendered for and a third-party page that
does not know the link cannot forge one. Public forms (sign up, "email me a link") have no link
token: they bind to a random ``pm_csrf`` cookie (signed double submit; a cross-site page can
neither read nor choose it, SameSite=Lax keeps it off cross-site POSTs too). Tokens expire after
``CSRF_MAX_AGE`` so a scraped form goes stale.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from papermail.settings import Settings

CSRF_MAX_AGE = 24 * 3600
CSRF_COOKIE = "pm_csrf"

# No inline script anywhere: the one script is a static file. Styles come from the one CSS file.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# A digest rendered for the browser is the email's HTML: inline styles, never a script.
DIGEST_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _mac(secret: str, binding: str, issued: int) -> str:
    message = f"papermail.csrf|{binding}|{issued}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_csrf(secret: str, binding: str, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(secret, binding, issued)}"


def check_csrf(
    secret: str, binding: str, value: str, *, max_age: int = CSRF_MAX_AGE, now: float | None = None
) -> bool:
    """True only for a token made for `binding` with this secret, at most `max_age` old."""
    if not binding or not value:
        return False
    issued_text, _, mac = value.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    age = (time.time() if now is None else now) - issued
    if not -60 <= age <= max_age:
        return False
    return hmac.compare_digest(mac, _mac(secret, binding, issued))


def csrf_cookie(request: Request) -> tuple[str, bool]:
    """The browser's CSRF nonce, and whether it is new (and must be set on the response)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum():
        return value, False
    return secrets.token_urlsafe(32), True


def client_ip(request: Request) -> str:
    """The peer address; behind a reverse proxy uvicorn's ``--forwarded-allow-ips`` puts the
    client's address here from X-Forwarded-For (only for proxies it trusts)."""
    return request.client.host if request.client else "unknown"


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),  # link tokens are in our URLs
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ]
    if settings.base_url.lower().startswith("https://"):
        headers.append((b"strict-transport-security", b"max-age=63072000"))
    return headers


class SecurityHeaders:
    """Pure ASGI middleware: adds the security headers to every response, a default CSP where a
    route did not set its own, and ``Cache-Control: no-store`` where none was set (pages behind
    link tokens are personal; public pages and static files set their own)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.headers = security_headers(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
