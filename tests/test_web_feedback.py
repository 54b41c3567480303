"""Feedback from digests: the signed "more / less like this" and "mute" links in real mails,
their pages (a GET changes nothing, the POST records), every way a link can be wrong, and the
manage page's ratings and keyword suggestions, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.emails import DigestLinks, digest_context, get_renderer, inline_css
from papermail.models import Digest, DigestItem, Interest, Paper, Rating, Subscriber
from papermail.services import digests, subscriptions
from papermail.settings import Settings
from papermail.tokens import Purpose, read_token
from tests.test_emails import HOSTILE, ClientView, entry
from tests.test_web_support import (
    BASE,
    add_confirmed,
    client_for,
    csrf_of,
    outbox,
    seed_papers,
    text_of,
    token_for,
)

NOW = datetime.now(UTC).replace(microsecond=0)
FEEDBACK_URL = re.compile(re.escape(BASE) + r"(/f/([\w.\-]+)/(\d+)/(more|less|mute/\d+))")


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine, now=NOW)
    with client_for(settings, engine) as test_client:
        yield test_client


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "linear attention", "mixture of experts")


@dataclass
class Mailed:
    """A digest as mailed: its message and, per rank, the stored item and its paper's title."""

    message: EmailMessage
    digest_id: int
    items: dict[int, tuple[list[str], str]]  # rank -> (matched terms, paper title)

    @property
    def text(self) -> str:
        return text_of(self.message)

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return part.get_content()

    def link(self, rank: int, action: str) -> str:
        """The app-relative path of one feedback link, read from the mail's text part. Mails offer
        "mute" only for terms that are not the reader's keywords: for those, the path a mute
        link would have (the route still takes any matched term)."""
        if action.startswith("mute/"):
            return self.link(rank, "more").removesuffix("/more") + "/" + action
        for match in FEEDBACK_URL.finditer(self.text):
            if (int(match.group(3)), match.group(4)) == (rank, action):
                return match.group(1)
        raise AssertionError(f"no {action} link for #{rank} in:\n{self.text}")


def mail_day(engine, settings, email: str, day: datetime = NOW) -> Mailed:
    """Score, store and send the day's digests (the real pipeline, into the outbox)."""
    report = digests.score_day(engine, settings, issue_date=day.date(), now=day)
    digests.send_digests(engine, settings, report.to_send)
    message = [m for m in outbox(settings) if m["To"] == email][-1]
    with Session(engine) as session:
        digest_id = session.exec(
            select(Digest.id)
            .join(Subscriber, col(Subscriber.id) == Digest.subscriber_id)
            .where(Subscriber.email == email, Digest.issue_date == day.date())
        ).one()
        rows = session.exec(
            select(DigestItem, Paper)
            .join(Paper, col(Paper.id) == DigestItem.paper_id)
            .where(DigestItem.digest_id == digest_id)
        )
        items = {item.rank: (list(item.matched), paper.title) for item, paper in rows}
    return Mailed(message, digest_id, items)


def state(engine) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, bool]]]:
    """Every rating and interest: what a feedback link may change."""
    with Session(engine) as session:
        ratings = sorted(
            (r.subscriber_id, r.paper_id, r.value) for r in session.exec(select(Rating))
        )
        interests = sorted(
            (i.subscriber_id, i.phrase, i.negative) for i in session.exec(select(Interest))
        )
    return ratings, interests


def post(client: TestClient, path: str, **data: str):
    """Open the link's page, then press its button (the form's own CSRF value)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": csrf_of(page.text), **data})


def test_every_paper_and_term_has_feedback_links_in_both_parts(client, engine, settings, ada):
    mailed = mail_day(engine, settings, "ada@example.org")
    assert len(mailed.items) >= 3
    found = FEEDBACK_URL.findall(mailed.text)
    tokens = {token for _, token, _, _ in found}
    assert len(tokens) == 1, "one token per digest, not one per link"
    secret = settings.secret_key.get_secret_value()
    data = read_token(secret, Purpose.feedback, tokens.pop())
    assert (data.subscriber_id, data.extra) == (ada.id, {"d": mailed.digest_id})

    html = unescape(mailed.html)
    expected = set()
    for rank, (matched, title) in mailed.items.items():
        assert matched, f"#{rank} {title} says why it matched"
        actions = ["more", "less"]  # no "mute": every matched term is one of Ada's keywords
        expected.update((rank, action) for action in actions)
        for action in actions:
            path = mailed.link(rank, action)
            assert f'href="{BASE}{path}"' in html
        assert f"More like this: {BASE}{mailed.link(rank, 'more')}" in mailed.text
        assert f"Less like this: {BASE}{mailed.link(rank, 'less')}" in mailed.text
    assert "Mute" not in mailed.text and "/mute/" not in html
    assert {(int(rank), action) for _, _, rank, action in found} == expected

    view = re.search(re.escape(BASE) + r"(/digest/[\w.\-]+)", mailed.text).group(1)
    on_page = FEEDBACK_URL.findall(unescape(client.get(view).text))  # signed afresh: same digest
    assert {(int(rank), action) for _, _, rank, action in on_page} == expected, "view page too"
    for token in {token for _, token, _, _ in on_page}:
        assert read_token(secret, Purpose.feedback, token).extra == {"d": mailed.digest_id}


def test_a_get_records_nothing_and_the_button_records(client, engine, settings, ada):
    mailed = mail_day(engine, settings, "ada@example.org")
    before = state(engine)
    for rank, (matched, title) in mailed.items.items():
        for action in ["more", "less", *(f"mute/{i}" for i in range(len(matched)))]:
            page = client.get(mailed.link(rank, action))
            assert page.status_code == 200
            assert title in unescape(page.text) and 'name="csrf"' in page.text
            assert page.headers["cache-control"] == "no-store"
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert " style=" not in page.text and "<script>" not in page.text
    assert state(engine) == before, "opening links (as mail scanners do) changes nothing"

    more = mailed.link(2, "more")
    page = client.get(more)
    assert "More papers like this?" in page.text and "More papers like this</button>" in page.text
    done = client.post(more, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "Thanks — recorded" in done.text
    assert "Fewer papers like this</button>" in done.text and "Remove my rating" in done.text
    with Session(engine) as session:
        (rated,) = session.exec(select(Rating)).all()
        paper_id = rated.paper_id
        assert session.get(Paper, paper_id).title == mailed.items[2][1]
    assert state(engine)[0] == [(ada.id, paper_id, 1)]
    assert state(engine)[1] == before[1]

    switched = client.post(mailed.link(2, "less"), data={"csrf": csrf_of(done.text)})
    assert switched.status_code == 200 and "More papers like this</button>" in switched.text
    assert state(engine)[0] == [(ada.id, paper_id, -1)], "the undo switches the rating"
    assert "You rated this paper before: fewer" in client.get(mailed.link(2, "more")).text
    cleared = client.post(mailed.link(2, "less")[:-4] + "clear", data={"csrf": csrf_of(done.text)})
    assert cleared.status_code == 200 and "Rating removed" in cleared.text
    assert state(engine)[0] == []


def test_muting_a_term_excludes_it_from_the_next_digest(client, engine, settings, ada):
    mailed = mail_day(engine, settings, "ada@example.org")
    rank = next(r for r, (m, _) in mailed.items.items() if m[0] == "linear attention")
    path = mailed.link(rank, "mute/0")
    ask = client.get(path)
    assert "Mute “linear attention”?" in ask.text
    assert "is one of your keywords" in ask.text, "muting a keyword says it removes it"
    done = client.post(path, data={"csrf": csrf_of(ask.text)})
    assert done.status_code == 200 and "“linear attention” is muted" in done.text
    assert "Leave out papers about" in done.text
    assert state(engine)[1] == [
        (ada.id, "linear attention", True),
        (ada.id, "mixture of experts", False),
    ]
    assert "is muted" in client.get(path).text, "a second visit says it is done"

    tomorrow = NOW + timedelta(days=1)
    with session_scope(engine) as session:
        for pid, title in (
            ("n1", "Mixture of experts with linear attention"),
            ("n2", "Mixture of experts at scale"),
        ):
            session.add(Paper(id=pid, title=title, abstract=title + ".", first_seen_at=tomorrow))
    nextday = mail_day(engine, settings, "ada@example.org", tomorrow + timedelta(hours=1))
    titles = {title for _, title in nextday.items.values()}
    assert titles == {"Mixture of experts at scale"}, "the muted term keeps its paper out"


def test_links_that_are_wrong_get_clear_pages_and_change_nothing(client, engine, settings, ada):
    bob = add_confirmed(engine, "bob@example.org", "mixture of experts")
    mailed = mail_day(engine, settings, "ada@example.org")
    bobs = mail_day(engine, settings, "bob@example.org")
    good = mailed.link(1, "more")
    token = good.split("/")[2]
    before = state(engine)
    manage_token = token_for(settings, Purpose.manage, ada)
    last = max(mailed.items)
    cases = {
        "/feedback/forged-token/1/more": 400,
        good.replace(token, token[:-3] + "abc"): 400,
        f"/feedback/{manage_token}/1/more": 400,  # another purpose's token
        f"/feedback/{token_for(settings, Purpose.view, ada, d=mailed.digest_id)}/1/more": 400,
        f"/feedback/{token}/0/more": 404,
        f"/feedback/{token}/{last + 1}/more": 404,
        f"/feedback/{token}/{10**30}/more": 404,
        f"/feedback/{token}/1/mute/{len(mailed.items[1][0])}": 404,
        f"/feedback/{token}/1/mute/-1": 404,
        f"/feedback/{token}/1/sideways": 404,
        f"/feedback/{token_for(settings, Purpose.feedback, ada)}/1/more": 404,  # no digest
        f"/feedback/{token_for(settings, Purpose.feedback, ada, d=999999)}/1/more": 404,
        # ada's own token naming bob's digest: a link only ever reaches its own digest
        f"/feedback/{token_for(settings, Purpose.feedback, ada, d=bobs.digest_id)}/1/more": 404,
    }
    for path, status in cases.items():
        page = client.get(path)
        assert page.status_code == status, (path, page.text)
        assert client.post(path, data={"csrf": "1.x"}).status_code == status, path
    assert "This link is not valid" in client.get(f"/feedback/{manage_token}/1/more").text
    assert "No such paper in this digest" in client.get(f"/feedback/{token}/0/more").text

    bobs_page = client.get(bobs.link(1, "more"))
    assert bobs.items[1][1] in unescape(bobs_page.text), "bob's token names bob's paper"
    assert client.post(good).status_code == 403, "no CSRF field"
    assert client.post(good, data={"csrf": csrf_of(bobs_page.text)}).status_code == 403
    mute = mailed.link(1, "mute/0")
    assert client.post(mute, data={"csrf": csrf_of(bobs_page.text)}).status_code == 403
    assert state(engine) == before

    with session_scope(engine) as session:
        subscriptions.revoke_links(session, session.get(Subscriber, ada.id))
    replaced = client.get(good)
    assert replaced.status_code == 410 and "replaced" in replaced.text
    with session_scope(engine) as session:
        session.delete(session.get(Digest, bobs.digest_id))
    assert client.get(bobs.link(1, "more")).status_code == 404, "deleted digest"
    with session_scope(engine) as session:
        subscriptions.delete_subscriber(session, session.get(Subscriber, bob.id))
    assert client.get(bobs.link(1, "more")).status_code == 404, "deleted subscriber"
    assert state(engine)[0] == before[0]


def test_a_hostile_paper_title_is_escaped_on_the_feedback_pages(client, engine, settings, ada):
    with session_scope(engine) as session:
        session.add(
            Paper(
                id="evil",
                title=f"Linear attention {HOSTILE}",
                abstract="Linear attention for everyone.",
                first_seen_at=NOW - timedelta(seconds=30),
            )
        )
    mailed = mail_day(engine, settings, "ada@example.org")
    rank = next(r for r, (_, title) in mailed.items.items() if HOSTILE in title)
    for action in ("more", "mute/0"):
        page = client.get(mailed.link(rank, action)).text
        assert "<script>" not in page and "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        done = post(client, mailed.link(rank, action)).text
        assert "<script>" not in done and "<img" not in done


def test_liked_papers_bring_keyword_suggestions_one_tap_adds_one(client, engine, settings, ada):
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    page = client.get(manage)
    assert "Suggested keywords" not in page.text and "More like this" in unescape(page.text)
    mailed = mail_day(engine, settings, "ada@example.org")
    for rank, (matched, _) in mailed.items.items():
        if "mixture of experts" in matched:
            assert post(client, mailed.link(rank, "more")).status_code == 200
    first = next(r for r, (m, _) in mailed.items.items() if "mixture of experts" not in m)
    assert post(client, mailed.link(first, "less")).status_code == 200

    page = client.get(manage)
    text = unescape(page.text)
    assert "You rated 2 papers from your digests: 1 “more like this” and 1 “less like this”" in text
    suggested = re.findall(r'name="keyword" value="([^"]+)"', text)
    assert suggested and "routing" in suggested
    assert not {"mixture of experts", "linear attention"} & set(suggested)

    refused = client.post(f"{manage}/keywords", data={"keyword": "routing"})
    assert refused.status_code == 403
    forged = client.post("/manage/forged/keywords", data={"csrf": csrf_of(page.text)})
    assert forged.status_code == 400 and "This link is not valid" in forged.text
    added = client.post(
        f"{manage}/keywords", data={"csrf": csrf_of(page.text), "keyword": "routing"}
    )
    assert added.status_code == 200 and "Added to your keywords" in added.text
    assert (ada.id, "routing", False) in state(engine)[1]
    assert 'name="keyword" value="routing"' not in added.text
    assert ">linear attention\nmixture of experts\nrouting</textarea>" in unescape(added.text)
    empty = client.post(f"{manage}/keywords", data={"csrf": csrf_of(page.text), "keyword": " "})
    assert empty.status_code == 400 and "choose a keyword" in empty.text


def test_adding_a_muted_word_as_a_keyword_unmutes_it(client, engine, settings, ada):
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    mailed = mail_day(engine, settings, "ada@example.org")
    rank = next(r for r, (m, _) in mailed.items.items() if m == ["linear attention"])
    post(client, mailed.link(rank, "mute/0"))
    page = client.get(manage)
    assert ">linear attention</textarea>" in unescape(page.text), "muted words are exclusions"
    client.post(
        f"{manage}/keywords", data={"csrf": csrf_of(page.text), "keyword": "Linear  attention"}
    )
    assert state(engine)[1] == [
        (ada.id, "Linear attention", False),
        (ada.id, "mixture of experts", False),
    ]


def test_the_preview_says_where_each_term_matched(client, settings, ada):
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    page = unescape(client.get(manage).text)
    assert "<mark>linear attention</mark> in the title and abstract" in page
    assert "<mark>linear attention</mark> in the abstract" in page  # the video diffusion paper
    answer = client.post(
        f"{manage}/preview", json={"csrf": csrf_of(page), "keywords": "video"}
    ).json()
    assert answer["items"][0]["reasons"] == [
        {"term": "video", "where": "in the title and abstract"}
    ]


def test_digests_that_are_not_stored_have_no_feedback_links(engine, settings, ada):
    with Session(engine) as session:
        subscriber = session.get(Subscriber, ada.id)
        rendered, links = digests.render_digest(
            settings,
            subscriber,
            issue_date=NOW.date(),
            scanned=3,
            entries=[entry()],
            digest_id=None,
        )
    assert links.feedback == ""
    assert "/feedback/" not in rendered.html and "/feedback/" not in rendered.text
    assert "More like this" not in rendered.html and "mute" not in rendered.text.lower()


@pytest.mark.parametrize(
    "entries",
    [[entry(), entry(title="Second", matched=("moe",), where=("title",))], [entry(matched=())]],
    ids=["two", "no-terms"],
)
def test_feedback_links_survive_inlining_the_template_once(entries) -> None:
    """The template inlined once gives a mail client what premailer per email would, with the
    feedback links' Jinja inside href attributes."""
    links = DigestLinks(
        view="https://p.example/digest/v",
        manage="https://p.example/manage/m",
        unsubscribe="https://p.example/unsubscribe/u",
        feedback="https://p.example/feedback/tok.en-1",
    )
    own = ["linear attention"]  # "moe" is not the reader's keyword: it may be muted
    ctx = digest_context(
        email="r@example.org",
        issue_date=NOW.date(),
        entries=entries,
        scanned=9,
        links=links,
        keywords=own,
    )
    renderer = get_renderer(Settings(_env_file=None))
    once = renderer.render("digest", ctx).html
    per_email = inline_css(renderer.environment.get_template("email/digest.html.j2").render(ctx))
    a, b = ClientView(once), ClientView(per_email)
    assert (a.elements, a.words, a.styles) == (b.elements, b.words, b.styles)
    hrefs = [href for _, _, href, _ in a.elements if href and "/feedback/" in href]
    expected = []
    for rank, e in enumerate(entries, start=1):
        expected += [f"{links.feedback}/{rank}/{action}" for action in ("more", "less", "save")]
        expected += [
            f"{links.feedback}/{rank}/mute/{i}" for i, t in enumerate(e.matched) if t not in own
        ]
    assert hrefs == expected


def test_after_a_rating_the_page_offers_the_next_paper_and_the_digest(
    client, engine, settings, ada
):
    mailed = mail_day(engine, settings, "ada@example.org")
    last = max(mailed.items)
    page = client.get(mailed.link(1, "more"))
    done = client.post(mailed.link(1, "more"), data={"csrf": csrf_of(page.text)})
    text = unescape(done.text)
    assert "Next in this digest" in text and mailed.items[2][1] in text
    token = FEEDBACK_URL.search(mailed.text).group(2)
    assert f'href="/feedback/{token}/2/more"' in done.text
    assert f'href="/feedback/{token}/2/less"' in done.text
    view = re.search(r'href="(/digest/[\w.\-]+)"', done.text)
    assert view and "Back to the digest" in text
    assert client.get(view.group(1)).status_code == 200
    assert client.get(f"/feedback/{token}/2/more").status_code == 200, "the long path works too"

    page = client.get(mailed.link(last, "less"))
    done = client.post(mailed.link(last, "less"), data={"csrf": csrf_of(page.text)})
    assert "That was the last paper of this digest." in done.text
    assert "Next in this digest" not in done.text and "Back to the digest" in done.text
