"""Helpers the web tests share (this module holds no tests): an app client, the CSRF value of
a rendered form, mails read back from the outbox, and a few papers to rank."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from papermail.db import session_scope
from papermail.models import Paper, Subscriber
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.settings import Settings
from papermail.tokens import Purpose, make_token
from papermail.web import create_app

BASE = "https://papermail.test"

PAPERS = [
    ("Linear Attention Transformers Scale to Long Context", "We study linear attention."),
    ("Gated Linear Attention for Language Modeling", "A gated linear attention recurrence."),
    ("Sparse Mixture of Experts Routing", "Mixture of experts layers with sparse routing."),
    ("Diffusion Models for Video Generation", "A video diffusion model with linear attention."),
    ("Medical Image Segmentation with U-Nets", "Segmentation of medical images."),
    ("Reward Model Calibration", "Calibrating reward models for preference learning."),
    ("State Space Models Revisited", "State space models compete with attention."),
    ("Interpretability with Sparse Autoencoders", "Sparse autoencoders find features."),
]


def client_for(settings: Settings, engine: Engine) -> TestClient:
    """HTTPS like production (secure cookies, HSTS); server errors raise in the test."""
    return TestClient(create_app(settings, engine=engine), base_url=BASE)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has a form with a CSRF field"
    return unescape(match.group(1))


def seed_papers(engine: Engine, *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        for i, (title, abstract) in enumerate(PAPERS):
            session.add(
                Paper(
                    id=f"2611.{i:05d}",
                    title=title,
                    abstract=abstract,
                    authors=["Ada Lovelace", "Alan Turing"],
                    upvotes=len(PAPERS) - i,
                    url=f"https://arxiv.org/abs/2611.{i:05d}",
                    listing_day=now.date(),
                    first_seen_at=now - timedelta(minutes=i),
                )
            )


def add_confirmed(engine: Engine, email: str, *keywords: str, **prefs) -> Subscriber:
    with session_scope(engine) as session:
        return add_subscriber(
            session,
            email=email,
            prefs=Preferences(keywords=keywords, **prefs),
            confirmed=True,
        )


def token_for(
    settings: Settings, purpose: Purpose, subscriber: Subscriber, *, version: int | None = None, **x
) -> str:
    assert subscriber.id is not None
    return make_token(
        settings.secret_key.get_secret_value(),
        purpose,
        subscriber.id,
        version=subscriber.token_version if version is None else version,
        nonce=subscriber.link_nonce,
        extra=x or None,
    )


def subscribe(client: TestClient, email: str, keywords: str, excluded: str = "", **extra):
    page = client.get("/")
    data = {"csrf": csrf_of(page.text), "email": email, "keywords": keywords}
    data.update(excluded=excluded, **extra)
    return client.post("/subscribe", data=data)


def outbox(settings: Settings) -> list[EmailMessage]:
    folder = settings.resolved_outbox_dir
    if not folder.is_dir():
        return []
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def link_in(message: EmailMessage, path: str) -> str:
    """The app-relative path of the first link to `path` (e.g. "/confirm/") in a mail."""
    match = re.search(re.escape(BASE + path) + r"[A-Za-z0-9_.\-]+", text_of(message))
    assert match, f"no {path} link in:\n{text_of(message)}"
    return match.group(0).removeprefix(BASE)
