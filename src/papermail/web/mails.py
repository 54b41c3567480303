"""The two mails the web app sends: a confirmation link and a manage link.

They are sent from a background task, after the response has gone out: the page a visitor sees
then takes the same time whether or not the address is known (and however slow SMTP is).
A failure is logged; the visitor can ask again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from email.utils import parseaddr

from papermail import dkim, emails
from papermail.errors import DeliveryError
from papermail.mailer import OutgoingMail, make_mailer
from papermail.settings import Settings
from papermail.tokens import Purpose, make_token

log = logging.getLogger(__name__)


def _link(
    settings: Settings, purpose: Purpose, subscriber_id: int, version: int, nonce: str | None
) -> str:
    token = make_token(
        settings.secret_key.get_secret_value(), purpose, subscriber_id, version=version, nonce=nonce
    )
    base = settings.base_url.rstrip("/")
    return f"{base}/{purpose.value}/{token}"


def _send(settings: Settings, email: str, rendered: emails.RenderedEmail) -> None:
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "papermail.localhost"
    message_id = emails.make_message_id(domain)
    data = dkim.sign_message(
        settings,
        emails.build_message(
            rendered, sender=settings.mail_from, recipient=email, message_id=message_id
        ),
    )
    mail = OutgoingMail(settings.mail_from, email, message_id, data, html=rendered.html)
    try:
        with make_mailer(settings).connection() as connection:
            connection.send(mail)
    except DeliveryError as exc:
        log.error("could not send %r to a subscriber: %s", rendered.subject, exc)


def send_confirmation(
    settings: Settings,
    *,
    email: str,
    subscriber_id: int,
    version: int,
    keywords: Sequence[str],
    nonce: str | None = None,
) -> None:
    """Double opt-in: nothing is sent to `email` before this link is used."""
    url = _link(settings, Purpose.confirm, subscriber_id, version, nonce)
    context = emails.confirm_context(email=email, keywords=keywords, confirm_url=url)
    _send(settings, email, emails.get_renderer(settings).render("confirm", context))


def send_manage_link(
    settings: Settings,
    *,
    email: str,
    subscriber_id: int,
    version: int,
    unsubscribed: bool,
    nonce: str | None = None,
) -> None:
    """For an address that is already confirmed: a link to its settings, nothing changed."""
    context = {
        "email": email,
        "manage_url": _link(settings, Purpose.manage, subscriber_id, version, nonce),
        "unsubscribed": unsubscribed,
    }
    _send(settings, email, emails.get_renderer(settings).render("manage_link", context))
