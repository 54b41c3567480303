"""Named interests on the manage page (issue 13 items 1-3): add, rename and remove an interest;
per interest its keywords, exclusions and share of the digest, seed papers (pasted ids, URLs,
titles, or a BibTeX/RIS upload: the page says which were found), followed authors, its live
preview and keyword suggestions. Export/import of the whole set (item 7) lives here too.

Every action is a POST with the manage page's CSRF token; the services in
``services.interests`` do the work, so the CLI and the page agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session, col, select

from papermail import ranking
from papermail.db import session_scope
from papermail.models import Paper, Rating, Subscriber, Topic
from papermail.services import feedback, interests
from papermail.services.subscriptions import InvalidInput, clean_phrases, topics_of
from papermail.tokens import Purpose
from papermail.web.context import Web, WebDep
from papermail.web.forms import split_phrases
from papermail.web.links import open_link
from papermail.web.pages import PageError, render
from papermail.web.preview import Preview
from papermail.web.routes.common import CsrfField, require_csrf, see_other
from papermail.web.routes.manage import PreviewRequest, preview_summary
from papermail.web.security import check_csrf, make_csrf

router = APIRouter(prefix="/manage/{token}")

MAX_UPLOAD = 2_000_000  # bytes of a BibTeX/RIS or export file
NOTICES = {
    "saved": "Saved. The preview shows what this interest brings from recent papers.",
    "renamed": "Renamed.",
    "followed": "Followed: their new papers always join this interest's section.",
    "unfollowed": "No longer followed.",
    "added": "Added to this interest's keywords.",
    "seed_removed": "Seed paper removed: this interest no longer learns from it.",
}
NOT_FOUND = PageError(404, "No such interest", "This interest does not exist (any more).")

Text = Annotated[str, Form(max_length=20_000)]


def _topic(session: Session, subscriber: Subscriber, topic_id: int) -> Topic:
    topic = session.get(Topic, topic_id)
    if topic is None or topic.subscriber_id != subscriber.id:
        raise NOT_FOUND
    return topic


def _posted(
    web: Web, session: Session, token: str, csrf: str, topic_id: int
) -> tuple[Subscriber, Topic]:
    """A form posted about one of the reader's interests: the link, its CSRF, the interest."""
    subscriber, _ = open_link(web, session, Purpose.manage, token)
    require_csrf(web, token, csrf)
    return subscriber, _topic(session, subscriber, topic_id)


def _refused(
    web: Web,
    session: Session,
    subscriber: Subscriber,
    token: str,
    topic_id: int,
    field: str,
    exc: InvalidInput,
    form: dict[str, str] | None = None,
) -> Response:
    """The interest page again (400) with what was refused, its changes rolled back."""
    session.rollback()
    topic = _topic(session, subscriber, topic_id)
    return _interest_page(
        web, session, subscriber, token, topic, errors={field: str(exc)}, form=form, status=400
    )


def _take_off(
    web: Web,
    token: str,
    csrf: str,
    topic_id: int,
    take_off: Callable[[Session, Topic, Sequence[str]], object],
    item: str,
    notice: str,
) -> Response:
    """One item (a followed author, a seed paper) off an interest, then back to its page."""
    with session_scope(web.engine) as session:
        _, topic = _posted(web, session, token, csrf, topic_id)
        take_off(session, topic, [item])
    return see_other(f"/manage/{token}/interests/{topic_id}?n={notice}")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


async def _read(upload: UploadFile | None) -> str | None:
    if upload is None or not upload.filename:
        return None
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise InvalidInput("the file is larger than 2 MB", field="seeds")
    return data.decode("utf-8", errors="replace")


def suggestions_for(
    web: Web, session: Session, topic: Topic, keywords: tuple[str, ...]
) -> list[str]:
    """Terms describing the papers liked under this interest and its found seed papers."""
    liked = set(
        session.exec(
            select(Rating.paper_id).where(
                Rating.subscriber_id == topic.subscriber_id,
                Rating.topic_id == topic.id,
                Rating.value == feedback.LIKE,
            )
        )
    )
    liked |= {s.paper_id for s in interests.seeds_of(session, topic.id) if s.paper_id}
    if not liked:
        return []
    model = web.preview.model(session)
    if model is None:
        return []
    papers = [
        ranking.PaperText(p.title, p.abstract)
        for p in session.exec(select(Paper).where(col(Paper.id).in_(liked)))
    ]
    return model.top_terms(papers, limit=5, exclude=keywords)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def based_on(
    keywords: tuple[str, ...], view: interests.InterestView, learned: ranking.Feedback | None
) -> str:
    """What an interest's preview ranks with besides keywords, in words: "3 seed papers",
    "your keywords, 2 seed papers and 4 papers you rated"; "" when keywords alone."""
    if not learned:
        return ""
    found = [s.paper_id for s in view.seeds if s.found and s.paper_id]
    seeds = len(set(found))  # a paper given twice (id and title) is one
    rated = max(len(learned) - len(found), 0)
    parts = ["your keywords"] if keywords else []
    parts += [_plural(seeds, "seed paper")] if seeds else []
    parts += [_plural(rated, "paper") + " you rated"] if rated else []
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _preview(
    web: Web,
    session: Session,
    topic: Topic,
    view: interests.InterestView,
    keywords: tuple[str, ...],
    excluded: tuple[str, ...],
) -> tuple[Preview, str]:
    """An interest's preview ranked as its digest section is (keywords, seed papers and
    ratings), and the sentence above it."""
    learned = feedback.interest_feedback(session, topic)
    preview = web.preview.preview(
        session, keywords=keywords, excluded=excluded, limit=view.max_papers, feedback=learned
    )
    return preview, preview_summary(preview, keywords, based_on=based_on(keywords, view, learned))


def _view(session: Session, subscriber: Subscriber, topic: Topic) -> interests.InterestView:
    assert subscriber.id is not None
    return next(v for v in interests.list_interests(session, subscriber.id) if v.id == topic.id)


def _interest_page(
    web: Web,
    session: Session,
    subscriber: Subscriber,
    token: str,
    topic: Topic,
    *,
    notice: str = "",
    errors: dict[str, str] | None = None,
    seed_results: list[interests.SeedResult] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    assert subscriber.id is not None and topic.id is not None
    view = _view(session, subscriber, topic)
    values = {
        "name": view.name,
        "keywords": "\n".join(view.keywords),
        "excluded": "\n".join(view.excluded),
        "max_papers": str(view.max_papers),
    } | (form or {})
    preview, summary = _preview(web, session, topic, view, view.keywords, view.excluded)
    context: dict[str, Any] = {
        "email": subscriber.email,
        "token": token,
        "csrf": make_csrf(web.secret, token),
        "interest": view,
        "form": values,
        "errors": errors or {},
        "notice": notice,
        "preview": preview,
        "summary": summary,
        "suggestions": suggestions_for(web, session, topic, view.keywords),
        "seed_results": seed_results,
        "single": len(topics_of(session, subscriber.id)) == 1,
    }
    return render(web, "interest", context, status=status)


@router.get("/interests/{topic_id}")
def interest_page(token: str, topic_id: int, web: WebDep, n: str = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        topic = _topic(session, subscriber, topic_id)
        return _interest_page(web, session, subscriber, token, topic, notice=NOTICES.get(n, ""))


@router.post("/interests/{topic_id}/preview")
def interest_preview(token: str, topic_id: int, payload: PreviewRequest, web: WebDep) -> Response:
    """JSON for the interest page's live preview: the typed keywords with the interest's seed
    papers and ratings. Changes nothing."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        topic = _topic(session, subscriber, topic_id)
        if not check_csrf(web.secret, token, payload.csrf):
            return JSONResponse({"error": "form expired: reload the page"}, status_code=403)
        try:
            keywords = clean_phrases(split_phrases(payload.keywords), field="keywords")
            excluded = clean_phrases(split_phrases(payload.excluded), field="excluded")
        except InvalidInput as exc:
            return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
        view = _view(session, subscriber, topic)
        result, summary = _preview(web, session, topic, view, keywords, excluded)
    return JSONResponse({"summary": summary, **result.as_json()})


@router.post("/interests")
async def add_interest(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    name: Annotated[str, Form(max_length=200)] = "",
    keywords: Text = "",
    seeds: Text = "",
    follow: Text = "",
    seed_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """A new named interest from keywords, seed papers and/or authors; the answer is its own
    page, saying which seed papers were found."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        assert subscriber.id is not None
        try:
            if interests.topic_named(session, subscriber.id, name) is not None:
                raise InvalidInput(f"you have an interest named {name.strip()!r}", field="name")
            result = interests.save_interest(
                session,
                subscriber,
                name,
                keywords=split_phrases(keywords) or None,
                seeds=_lines(seeds),
                seed_file_text=await _read(seed_file),
                follow=_lines(follow),
            )
        except InvalidInput as exc:
            session.rollback()
            raise PageError(
                400,
                "This interest could not be added",
                f"{exc}. Go back, change it and add it again.",
                action_url=f"/manage/{token}#interests",
                action_label="Back to my settings",
            ) from None
        notice = f"Added the interest “{result.topic.name}”."
        return _interest_page(
            web, session, subscriber, token, result.topic, notice=notice, seed_results=result.seeds
        )


@router.post("/interests/{topic_id}")
def save_interest(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    keywords: Text = "",
    excluded: Text = "",
    max_papers: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        form = {"keywords": keywords, "excluded": excluded, "max_papers": max_papers}
        try:
            try:
                share = int(max_papers)
            except ValueError:
                raise InvalidInput("give a number from 1 to 100", field="max_papers") from None
            kw = split_phrases(keywords)
            if not kw and not interests.seeds_of(session, topic.id):
                raise InvalidInput("give at least one keyword (or seed papers)", field="keywords")
            interests.save_interest(
                session,
                subscriber,
                topic.name,
                keywords=kw,
                excluded=split_phrases(excluded),
                max_papers=share,
            )
        except InvalidInput as exc:
            session.rollback()
            errors = {exc.field or "form": str(exc)}
            return _interest_page(
                web, session, subscriber, token, topic, errors=errors, form=form, status=400
            )
    return see_other(f"/manage/{token}/interests/{topic_id}?n=saved")


@router.post("/interests/{topic_id}/rename")
def rename_interest(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        assert subscriber.id is not None
        try:
            clean = interests.clean_name(name)
            other = interests.topic_named(session, subscriber.id, clean)
            if other is not None and other.id != topic.id:
                raise InvalidInput(f"you have an interest named {clean!r}", field="name")
        except InvalidInput as exc:
            return _interest_page(
                web,
                session,
                subscriber,
                token,
                topic,
                errors={"name": str(exc)},
                form={"name": name},
                status=400,
            )
        topic.name = clean
        session.add(topic)
    return see_other(f"/manage/{token}/interests/{topic_id}?n=renamed")


@router.post("/interests/{topic_id}/seeds")
async def add_seeds(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    seeds: Text = "",
    seed_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Paste ids/URLs/titles or upload BibTeX/RIS: the answer lists found and not found."""
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        try:
            text = await _read(seed_file)
            if not _lines(seeds) and not text:
                raise InvalidInput(
                    "paste arXiv ids, URLs or titles, or choose a file", field="seeds"
                )
            result = interests.save_interest(
                session, subscriber, topic.name, seeds=_lines(seeds), seed_file_text=text
            )
        except InvalidInput as exc:
            return _refused(
                web, session, subscriber, token, topic_id, "seeds", exc, {"seeds": seeds}
            )
        found = sum(r.found for r in result.seeds)
        notice = f"{found} of {len(result.seeds)} seed papers found in the collected papers."
        return _interest_page(
            web, session, subscriber, token, topic, notice=notice, seed_results=result.seeds
        )


@router.post("/interests/{topic_id}/follow")
def follow(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    author: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        try:
            names = _lines(author)
            if not names:
                raise InvalidInput("type an author's name", field="follow")
            interests.follow_authors(session, topic, names)
        except InvalidInput as exc:
            return _refused(web, session, subscriber, token, topic_id, "follow", exc)
    return see_other(f"/manage/{token}/interests/{topic_id}?n=followed")


@router.post("/interests/{topic_id}/unfollow")
def unfollow(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    author: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _take_off(web, token, csrf, topic_id, interests.unfollow_authors, author, "unfollowed")


@router.post("/interests/{topic_id}/seeds/remove")
def remove_seed(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    seed: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """One seed paper off this interest (as given: an arXiv id, URL or title)."""
    return _take_off(
        web, token, csrf, topic_id, interests.remove_seeds, seed, "seed_removed#seeds-title"
    )


@router.post("/interests/{topic_id}/keywords")
def add_keyword(
    token: str,
    topic_id: int,
    web: WebDep,
    csrf: CsrfField = "",
    keyword: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """One tap on a suggested keyword adds it to this interest."""
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        have, _ = interests.keywords_and_exclusions(session, topic)
        try:
            interests.save_interest(session, subscriber, topic.name, keywords=[*have, keyword])
        except InvalidInput as exc:
            return _refused(web, session, subscriber, token, topic_id, "keywords", exc)
    return see_other(f"/manage/{token}/interests/{topic_id}?n=added")


@router.post("/interests/{topic_id}/remove")
def remove(token: str, topic_id: int, web: WebDep, csrf: CsrfField = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, topic = _posted(web, session, token, csrf, topic_id)
        try:
            interests.remove_interest(session, subscriber, topic.name)
        except InvalidInput as exc:
            raise PageError(
                400,
                "This interest cannot be removed",
                f"{exc}.",
                action_url=f"/manage/{token}/interests/{topic_id}",
                action_label="Back to the interest",
            ) from None
    return see_other(f"/manage/{token}?n=interest_removed#interests")


# --- Take your data with you (item 7) ---------------------------------------------------------


@router.get("/export.json")
def export(token: str, web: WebDep) -> Response:
    """The JSON `papermail export EMAIL` writes."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        data = interests.export_subscriber(session, subscriber)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="papermail-interests.json"'},
    )


@router.post("/import")
async def import_file(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    export_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Read an export into this subscriber (its address, never the file's)."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        try:
            text = await _read(export_file)
            if not text:
                raise InvalidInput("choose a papermail export file (.json)", field="file")
            try:
                data = json.loads(text)
            except ValueError:
                raise InvalidInput("the file is not JSON", field="file") from None
            interests.import_subscriber(session, data, email=subscriber.email)
        except (InvalidInput, KeyError, TypeError) as exc:
            session.rollback()
            raise PageError(
                400,
                "This file could not be imported",
                f"{exc}. Nothing was changed.",
                action_url=f"/manage/{token}",
                action_label="Back to my settings",
            ) from None
    return see_other(f"/manage/{token}?n=imported#interests")
