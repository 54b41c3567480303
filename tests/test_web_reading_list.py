"""The reading list (issue 13 item 4): "Save" in real mails (both parts), its page (GET saves
nothing, POST saves and rates "more like this" under the paper's interest), the list behind the
manage link, removing, BibTeX export, the list's own Atom feed, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from html import unescape

import bibtexparser
import feedparser
from sqlmodel import Session, select

from papermail.models import DigestItem, Paper, Rating, SavedPaper
from papermail.services import reading_list
from papermail.tokens import Purpose
from tests.test_web_feedback import NOW, mail_day
from tests.test_web_feedback import ada as ada_fixture
from tests.test_web_feedback import client as client_fixture
from tests.test_web_support import BASE, csrf_of, token_for

client, ada = client_fixture, ada_fixture  # test_web_feedback's fixtures, under their names


def saved_rows(engine) -> list[tuple[int, str, int | None]]:
    with Session(engine) as session:
        return [(s.subscriber_id, s.paper_id, s.topic_id) for s in session.exec(select(SavedPaper))]


def test_save_from_the_mail_then_list_bibtex_and_feed(client, engine, settings, ada):
    mailed = mail_day(engine, settings, "ada@example.org")
    links = re.findall(re.escape(BASE) + r"(/f/[\w.\-]+/(\d+)/save)", mailed.text)
    assert {int(rank) for _, rank in links} == set(mailed.items), "a Save link per paper"
    path = dict((int(rank), p) for p, rank in links)[1]
    assert f'href="{BASE}{path}"' in unescape(mailed.html)

    page = client.get(path)  # a mail scanner opening the link saves nothing
    assert page.status_code == 200 and "Save this paper" in page.text
    assert saved_rows(engine) == []
    refused = client.post(path, data={"csrf": "forged"})
    assert refused.status_code == 403 and saved_rows(engine) == []
    done = client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "Saved to your reading list" in unescape(done.text)
    again = client.post(path, data={"csrf": csrf_of(page.text)})
    assert again.status_code == 200
    with Session(engine) as session:
        item = session.exec(
            select(DigestItem).where(DigestItem.digest_id == mailed.digest_id, DigestItem.rank == 1)
        ).one()
        rating = session.exec(select(Rating).where(Rating.paper_id == item.paper_id)).one()
        assert rating.value == 1 and rating.topic_id == item.topic_id, "a positive rating"
        paper = session.get(Paper, item.paper_id)
    assert saved_rows(engine) == [(ada.id, item.paper_id, item.topic_id)], "saved once"

    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    assert f'href="{manage}/saved"' in client.get(manage).text
    listing = client.get(manage + "/saved")
    assert listing.status_code == 200 and paper.title in unescape(listing.text)

    bib = client.get(manage + "/saved.bib")
    assert bib.status_code == 200 and "attachment" in bib.headers["content-disposition"]
    entries = bibtexparser.parse_string(bib.text).entries
    assert len(entries) == 1
    assert entries[0].fields_dict["title"].value.strip("{}") == paper.title
    assert entries[0].fields_dict["eprint"].value == paper.id

    feed_url = re.search(r'id="saved-feed-url"[^>]*value="([^"]+)"', listing.text).group(1)
    feed_path = unescape(feed_url).removeprefix(BASE)
    assert feed_path.startswith("/saved/") and feed_path.endswith(".atom")
    feed = client.get(feed_path)
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo and [e.title for e in parsed.entries] == [paper.title]
    assert client.get(feed_path.replace("/saved/", "/feed/")).status_code == 400, "own purpose"

    removed = client.post(
        manage + "/saved/remove",
        data={"csrf": csrf_of(listing.text), "paper": paper.id},
        follow_redirects=True,
    )
    assert "Removed from your reading list." in removed.text
    assert saved_rows(engine) == []


def test_bibtex_escapes_and_gives_unique_keys():
    papers = [
        Paper(
            id="2611.00001",
            title="50% of {Braces} & more_things",
            abstract="",
            authors=["José Núñez", "B. Other"],
            first_seen_at=NOW,
        ),
        Paper(
            id="x" * 16, title="Another", abstract="", authors=["Núñez, José"], first_seen_at=NOW
        ),
    ]
    text = reading_list.bibtex(papers)
    library = bibtexparser.parse_string(text)
    assert not library.failed_blocks
    keys = [e.key for e in library.entries]
    assert len(set(keys)) == 2 and keys[0].startswith("nunez")
    assert r"50\% of \{Braces\} \& more\_things" in text
    assert "eprint" not in text.split("@misc")[2], "no arXiv id, no eprint"
