"""The manage page: keywords with a live preview, schedule, snooze, links, and data deletion;
what the subscriber's ratings taught, with keywords suggested from the papers they liked.

Every action is a POST with a CSRF token bound to the page's manage token, answered by a redirect
back to the page with a notice (post/redirect/get), so the page works without JavaScript.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from papermail.db import session_scope
from papermail.models import Frequency, Subscriber, utcnow
from papermail.services import feedback, subscriptions
from papermail.services.interests import list_interests
from papermail.services.subscriptions import InvalidInput
from papermail.services.today import resume_after_bounces, today_of
from papermail.tokens import Purpose
from papermail.web.context import Web, WebDep
from papermail.web.forms import (
    SNOOZE_WEEKS,
    WEEKDAYS,
    PreferencesForm,
    local_today,
    split_phrases,
    zone_groups,
)
from papermail.web.links import open_link, path_for
from papermail.web.pages import render
from papermail.web.preview import Preview
from papermail.web.routes.common import CsrfField, require_csrf, see_other
from papermail.web.security import check_csrf, make_csrf

router = APIRouter(prefix="/manage/{token}")

NOTICES = {
    "welcome": "You're subscribed. A first digest with the best recent papers is on its way "
    "now; the next ones come at your send time.",
    "saved": "Saved. The preview shows what your keywords bring from recent papers.",
    "snoozed": "Snoozed: no digests until the date shown.",
    "resumed": "Snooze ended: digests resume at the next send time.",
    "invalidated": "Done: every older link stopped working. This page has a new address: "
    "bookmark it, or ask for a link by email later.",
    "resubscribed": "Welcome back: you're subscribed again.",
    "added": "Added to your keywords. The preview shows what they bring now.",
    "resumed_bounces": "Resumed: digests are sent to this address again.",
    "operator_suspended": "Digests to this address were stopped by the operator of this "
    "papermail: only they can resume them.",
    "interest_removed": "Interest removed. Your ratings and past digests stay.",
    "imported": "Imported: the file's interests, seed papers, authors and ratings are yours now.",
}


def preview_summary(preview: Preview, keywords: tuple[str, ...], *, based_on: str = "") -> str:
    """The one sentence above the preview list (the JSON endpoint sends the same text).
    `based_on` names what else the ranking learned from ("3 seed papers")."""
    if not keywords and not based_on:
        return "Add a keyword to see which recent papers it brings."
    if not preview.scanned:
        return "No papers have been collected yet: the preview fills in after the next run."
    if not preview.matches:
        if based_on:
            return f"Based on {based_on}: none of the {preview.scanned} recent papers match."
        return f"None of the {preview.scanned} recent papers match these keywords."
    shown = len(preview.items)
    head = f"{preview.matches_label} of {preview.scanned} recent papers match"
    if based_on:
        head = f"Based on {based_on}, {head}"
    return f"{head}; a digest shows the top {shown}:" if preview.matches > shown else head + ":"


def _status(subscriber: Subscriber) -> tuple[str, str]:
    """(badge class, text) saying whether and when digests come."""
    if subscriber.unsubscribed_at is not None:
        return "off", "Unsubscribed: nothing is sent to you."
    if not subscriber.confirmed:
        return "off", "Not confirmed yet: use the link in the confirmation mail."
    if subscriber.suspended_at is not None:
        return "off", "Suspended: mail to this address kept bouncing."
    if subscriber.frequency == Frequency.paused:
        return "off", "Paused: no digests until you choose daily or weekly."
    when = f"{subscriber.send_hour:02d}:00 {subscriber.timezone}"
    if subscriber.frequency == Frequency.weekly:
        when = f"every {WEEKDAYS[subscriber.weekly_day]} at {when}"
    else:
        when = f"every day at {when}"
    if subscriber.snoozed_until and subscriber.snoozed_until > local_today(subscriber.timezone):
        return "snoozed", f"Snoozed until {subscriber.snoozed_until.isoformat()}, then {when}."
    return "on", f"Active: digests {when}."


def _page(
    web: Web,
    session: Session,
    subscriber: Subscriber,
    token: str,
    *,
    form: PreferencesForm | None = None,
    notice: str = "",
    status: int = 200,
) -> Response:
    if form is None:
        form = PreferencesForm.from_preferences(subscriptions.preferences_of(session, subscriber))
    keywords = split_phrases(form.keywords)
    excluded = split_phrases(form.excluded)
    try:
        keywords = subscriptions.clean_phrases(keywords, field="keywords")
        excluded = subscriptions.clean_phrases(excluded, field="excluded")
    except InvalidInput:
        keywords = excluded = ()
    preview = web.preview.preview(
        session, keywords=keywords, excluded=excluded, limit=subscriber.max_papers
    )
    assert subscriber.id is not None
    ratings = feedback.rating_counts(session, subscriber_id=subscriber.id)
    # Only subscribers who liked papers get suggestions; they reuse the preview's fitted model.
    suggestions = (
        feedback.suggest_keywords(
            session,
            subscriber_id=subscriber.id,
            settings=web.settings,
            model=web.preview.model(session),
        )
        if ratings[feedback.LIKE]
        else []
    )
    badge, status_text = _status(subscriber)
    snoozed = subscriber.snoozed_until is not None and subscriber.snoozed_until > local_today(
        subscriber.timezone
    )
    context: dict[str, Any] = {
        "email": subscriber.email,
        "token": token,
        "csrf": make_csrf(web.secret, token),
        "form": form,
        "errors": form.errors,
        "notice": notice,
        "badge": badge,
        "status_text": status_text,
        "today": today_of(session, subscriber, utcnow()),
        "interests": list_interests(session, subscriber.id),
        "unsubscribed": subscriber.unsubscribed_at is not None,
        "snoozed_until": subscriber.snoozed_until.isoformat() if snoozed else "",
        "preview": preview,
        "summary": preview_summary(preview, keywords),
        "liked": ratings[feedback.LIKE],
        "disliked": ratings[feedback.DISLIKE],
        "suggestions": suggestions,
        "weekdays": WEEKDAYS,
        "zones": zone_groups(),
        "snooze_weeks": SNOOZE_WEEKS,
        "feed_url": web.url(path_for(web, Purpose.feed, subscriber)),
        "unsubscribe_path": path_for(web, Purpose.unsubscribe, subscriber),
    }
    return render(web, "manage", context, status=status)


@router.get("")
def manage_page(token: str, web: WebDep, n: str = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        return _page(web, session, subscriber, token, notice=NOTICES.get(n, ""))


@router.post("")
def save(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    keywords: Annotated[str, Form(max_length=20_000)] = "",
    excluded: Annotated[str, Form(max_length=20_000)] = "",
    frequency: Annotated[str, Form(max_length=20)] = "",
    weekly_day: Annotated[str, Form(max_length=20)] = "0",
    send_hour: Annotated[str, Form(max_length=20)] = "",
    timezone: Annotated[str, Form(max_length=100)] = "",
    max_papers: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    form = PreferencesForm(
        keywords, excluded, frequency, weekly_day, send_hour, timezone, max_papers
    )
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        if not check_csrf(web.secret, token, csrf):
            form.errors = {"form": "This form expired: check your changes and save again."}
            return _page(web, session, subscriber, token, form=form, status=403)
        prefs = form.preferences()
        if prefs is None:
            return _page(web, session, subscriber, token, form=form, status=400)
        subscriptions.apply_preferences(session, subscriber, prefs)
    return see_other(f"/manage/{token}?n=saved")


class PreviewRequest(BaseModel):
    """What the page's script sends while the keywords are being typed."""

    csrf: str = Field("", max_length=200)
    keywords: str = Field("", max_length=20_000)
    excluded: str = Field("", max_length=20_000)


@router.post("/preview")
def preview(token: str, payload: PreviewRequest, web: WebDep) -> Response:
    """JSON for the live preview; changes nothing."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        if not check_csrf(web.secret, token, payload.csrf):
            return JSONResponse({"error": "form expired: reload the page"}, status_code=403)
        try:
            keywords = subscriptions.clean_phrases(
                split_phrases(payload.keywords), field="keywords"
            )
            excluded = subscriptions.clean_phrases(
                split_phrases(payload.excluded), field="excluded"
            )
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        result = web.preview.preview(
            session, keywords=keywords, excluded=excluded, limit=subscriber.max_papers
        )
    return JSONResponse({"summary": preview_summary(result, keywords), **result.as_json()})


@router.post("/keywords")
def add_keyword(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    keyword: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """One tap on a suggested keyword adds it (any other keyword is validated as the form is)."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        try:
            feedback.add_keyword(session, subscriber, keyword)
        except InvalidInput as exc:
            form = PreferencesForm.from_preferences(
                subscriptions.preferences_of(session, subscriber)
            )
            form.errors = {"keywords": str(exc)}
            return _page(web, session, subscriber, token, form=form, status=400)
    return see_other(f"/manage/{token}?n=added")


@router.post("/snooze")
def snooze(
    token: str, web: WebDep, csrf: CsrfField = "", weeks: Annotated[int, Form(ge=0, le=52)] = 0
) -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        today = local_today(subscriber.timezone)
        subscriptions.snooze(session, subscriber, weeks=weeks, today=today)
    return see_other(f"/manage/{token}?n={'snoozed' if weeks else 'resumed'}")


@router.post("/invalidate")
def invalidate(token: str, web: WebDep, csrf: CsrfField = "") -> Response:
    """Bump the token version; this page moves to a new address (the old one is dead)."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        subscriptions.revoke_links(session, subscriber)
        session.flush()
        fresh = path_for(web, Purpose.manage, subscriber)
    return see_other(f"{fresh}?n=invalidated")


@router.post("/resume")
def resume(token: str, web: WebDep, csrf: CsrfField = "") -> Response:
    """Resume digests after a suspension for bounces (the reader says the address works)."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        resumed = resume_after_bounces(session, subscriber)
    return see_other(f"/manage/{token}?n={'resumed_bounces' if resumed else 'operator_suspended'}")


@router.post("/resubscribe")
def resubscribe(token: str, web: WebDep, csrf: CsrfField = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        subscriptions.resubscribe(session, subscriber, now=utcnow())
    return see_other(f"/manage/{token}?n=resubscribed")


@router.get("/delete")
def delete_page(token: str, web: WebDep) -> Response:
    """The confirmation step: says what goes, with one button."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        context = {"email": subscriber.email, "token": token, "csrf": make_csrf(web.secret, token)}
    return render(web, "delete", context)


@router.post("/delete")
def delete(token: str, web: WebDep, csrf: CsrfField = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        email = subscriber.email
        subscriptions.delete_subscriber(session, subscriber)
    return render(web, "deleted", {"email": email})
