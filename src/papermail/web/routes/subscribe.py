"""Sign up (double opt-in), confirm, and "email me a link to my settings"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import JSONResponse, Response

from papermail.db import session_scope
from papermail.models import Frequency, utcnow
from papermail.services import subscriptions
from papermail.services.subscriptions import InvalidInput, Preferences, SignUp
from papermail.services.welcome import send_welcome_digest
from papermail.tokens import Purpose
from papermail.web import mails
from papermail.web.context import Web, WebDep
from papermail.web.forms import known_zones, split_phrases, zone_groups
from papermail.web.links import open_link, path_for
from papermail.web.pages import render
from papermail.web.routes.common import (
    CsrfField,
    Limit,
    PublicForm,
    rate_limit,
    require_csrf,
    see_other,
)
from papermail.web.routes.manage import PreviewRequest, preview_summary
from papermail.web.security import make_csrf

router = APIRouter()

TOO_MANY = (
    "Too many requests for this address or from your network in the last hour. "
    "Check your inbox (and spam folder) for the mails already sent, or try again later."
)
FORM_EXPIRED = "This form expired or was not sent from papermail: please send it again."
DEFAULT_ZONE = "UTC"  # without the browser's guess (no script), until the reader picks theirs


def _subscribe_page(
    web: WebDep,
    form: PublicForm,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    status: int = 200,
    guess_timezone: bool = False,
) -> Response:
    """The sign-up form with `values` as typed. `guess_timezone`: a fresh form, whose time zone
    the page's script may set to the browser's (without script it stays UTC, visibly)."""
    context = {
        "values": values,
        "errors": errors,
        "csrf": form.token(),
        "zones": zone_groups(),
        "guess_timezone": guess_timezone,
        "send_hour": Preferences().send_hour,
    }
    keywords: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    if not errors:
        try:
            keywords = subscriptions.clean_phrases(
                split_phrases(values.get("keywords", "")), field="keywords"
            )
            excluded = subscriptions.clean_phrases(
                split_phrases(values.get("excluded", "")), field="excluded"
            )
        except InvalidInput:
            keywords = excluded = ()
    with session_scope(web.engine) as session:
        preview = web.preview.preview(session, keywords=keywords, excluded=excluded, limit=5)
    context |= {"preview": preview, "summary": preview_summary(preview, keywords)}
    return form.finish(render(web, "subscribe", context, status=status))


@router.get("/")
def subscribe_form(request: Request, web: WebDep) -> Response:
    values = {
        "email": "",
        "keywords": "",
        "excluded": "",
        "frequency": "daily",
        "timezone": DEFAULT_ZONE,
    }
    return _subscribe_page(web, PublicForm(web, request), values, {}, guess_timezone=True)


@router.post("/subscribe/preview")
def subscribe_preview(request: Request, payload: PreviewRequest, web: WebDep) -> Response:
    """JSON for the sign-up page's live preview: what recent papers the typed keywords bring.
    Changes nothing; the form's public CSRF token (bound to the browser's cookie) is required."""
    if not PublicForm(web, request).valid(payload.csrf):
        return JSONResponse({"error": "form expired: reload the page"}, status_code=403)
    try:
        keywords = subscriptions.clean_phrases(split_phrases(payload.keywords), field="keywords")
        excluded = subscriptions.clean_phrases(split_phrases(payload.excluded), field="excluded")
    except InvalidInput as exc:
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
    with session_scope(web.engine) as session:
        result = web.preview.preview(session, keywords=keywords, excluded=excluded, limit=5)
    return JSONResponse({"summary": preview_summary(result, keywords), **result.as_json()})


@router.post("/subscribe")
def subscribe(
    request: Request,
    web: WebDep,
    background: BackgroundTasks,
    csrf: CsrfField = "",
    email: Annotated[str, Form(max_length=1000)] = "",
    keywords: Annotated[str, Form(max_length=20_000)] = "",
    excluded: Annotated[str, Form(max_length=20_000)] = "",
    timezone: Annotated[str, Form(max_length=100)] = "",
    frequency: Annotated[str, Form(max_length=20)] = "daily",
    action: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The same page for a new, an unconfirmed and a confirmed address; the mail differs.
    The "Preview" button (action=preview) only shows the page again with the preview."""
    form = PublicForm(web, request)
    frequency = frequency if frequency in (Frequency.daily, Frequency.weekly) else "daily"
    timezone = timezone.strip() or DEFAULT_ZONE  # a form from before the time zone field
    values = {
        "email": email,
        "keywords": keywords,
        "excluded": excluded,
        "frequency": frequency,
        "timezone": timezone,
    }
    if not form.valid(csrf):
        return _subscribe_page(web, form, values, {"form": FORM_EXPIRED}, status=403)
    if action == "preview":
        return _subscribe_page(web, form, values, {})
    if timezone not in known_zones():
        error = f"unknown time zone {timezone!r}: choose yours from the list"
        return _subscribe_page(web, form, values, {"timezone": error}, status=400)
    prefs = Preferences(
        keywords=split_phrases(keywords),
        excluded=split_phrases(excluded),
        timezone=timezone,
        frequency=Frequency(frequency),
        weekly_day=utcnow().weekday(),
    )
    try:
        address = subscriptions.normalize_email(email)
        prefs = subscriptions.validate_preferences(prefs)
    except InvalidInput as exc:
        return _subscribe_page(web, form, values, {exc.field or "form": str(exc)}, status=400)
    limit = rate_limit(web, request, address)
    if limit is Limit.client:
        return _subscribe_page(web, form, values, {"form": TOO_MANY}, status=429)
    if limit is Limit.ok:  # over the address's limit: no mail, and the same answer
        background.add_task(_sign_up, web, address, prefs)
    return _sent(form.finish(render(web, "sent", {"email": address, "kind": "subscribe"})))


def _sent(response: Response) -> Response:
    """The work behind a sign-up or link request runs after the answer (see _sign_up). Closing
    the connection keeps that work from delaying, and so revealing itself through, the next
    request a client sends on the same connection."""
    response.headers["connection"] = "close"
    return response


def _sign_up(web: Web, address: str, prefs: Preferences) -> None:
    """Runs after the answer went out, for a new, an unconfirmed and a confirmed address alike:
    the answer cannot tell them apart by its content or by its time (issue 15 #7)."""
    with session_scope(web.engine) as session:
        result = subscriptions.request_subscription(session, email=address, prefs=prefs)
    if result.action is SignUp.confirm:
        mails.send_confirmation(
            web.settings,
            email=result.email,
            subscriber_id=result.subscriber_id,
            version=result.token_version,
            keywords=result.keywords,
            nonce=result.link_nonce,
        )
    elif result.action is SignUp.manage:
        mails.send_manage_link(
            web.settings,
            email=result.email,
            subscriber_id=result.subscriber_id,
            version=result.token_version,
            unsubscribed=result.unsubscribed,
            nonce=result.link_nonce,
        )


@router.get("/confirm/{token}")
def confirm_page(token: str, web: WebDep) -> Response:
    """A GET only shows a button: mail scanners open links, and must not confirm for anyone."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.confirm, token)
        context = {
            "email": subscriber.email,
            "keywords": subscriptions.keywords_of(session, subscriber.id),  # type: ignore[arg-type]
            "confirmed": subscriber.confirmed and subscriber.unsubscribed_at is None,
            "manage_path": path_for(web, Purpose.manage, subscriber),
            "token": token,
            "csrf": make_csrf(web.secret, token),
        }
    return render(web, "confirm", context)


@router.post("/confirm/{token}")
def confirm(token: str, web: WebDep, background: BackgroundTasks, csrf: CsrfField = "") -> Response:
    """Confirms, then (the first time) sends the welcome digest after the answer went out."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.confirm, token)
        require_csrf(web, token, csrf)
        first = not subscriber.confirmed
        subscriptions.confirm_subscriber(session, subscriber, now=utcnow())
        manage = path_for(web, Purpose.manage, subscriber)
        subscriber_id = subscriber.id
    if first and subscriber_id is not None:
        background.add_task(send_welcome_digest, web.engine, web.settings, subscriber_id)
    return see_other(f"{manage}?n=welcome")


@router.get("/link")
def link_form(request: Request, web: WebDep) -> Response:
    form = PublicForm(web, request)
    context = {"email": "", "errors": {}, "csrf": form.token()}
    return form.finish(render(web, "link", context))


@router.post("/link")
def send_link(
    request: Request,
    web: WebDep,
    background: BackgroundTasks,
    csrf: CsrfField = "",
    email: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Always the same answer: a known address gets a manage (or confirmation) link, an unknown
    one gets nothing, and the page cannot tell which."""
    form = PublicForm(web, request)

    def again(errors: dict[str, str], status: int) -> Response:
        context = {"email": email, "errors": errors, "csrf": form.token()}
        return form.finish(render(web, "link", context, status=status))

    if not form.valid(csrf):
        return again({"form": FORM_EXPIRED}, 403)
    try:
        address = subscriptions.normalize_email(email)
    except InvalidInput as exc:
        return again({"email": str(exc)}, 400)
    limit = rate_limit(web, request, address)
    if limit is Limit.client:
        return again({"form": TOO_MANY}, 429)
    if limit is Limit.ok:  # over the address's limit: no mail, and the same answer
        background.add_task(_send_link, web, address)
    return _sent(form.finish(render(web, "sent", {"email": address, "kind": "link"})))


def _send_link(web: Web, address: str) -> None:
    """After the answer went out, known address or not (see _sign_up)."""
    with session_scope(web.engine) as session:
        subscriber = subscriptions.get_by_email(session, address)
        if subscriber is None or subscriber.id is None:
            return
        keywords = subscriptions.keywords_of(session, subscriber.id)
    if subscriber.confirmed:
        mails.send_manage_link(
            web.settings,
            email=address,
            subscriber_id=subscriber.id,
            version=subscriber.token_version,
            unsubscribed=subscriber.unsubscribed_at is not None,
            nonce=subscriber.link_nonce,
        )
    else:
        mails.send_confirmation(
            web.settings,
            email=address,
            subscriber_id=subscriber.id,
            version=subscriber.token_version,
            keywords=keywords,
            nonce=subscriber.link_nonce,
        )
