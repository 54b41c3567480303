"""Named interests on the manage page (issue 13 items 1-3, 7): add one from seed papers
(pasted and uploaded: found / not found), followed authors, rename, keywords/exclusions/share,
suggestions per interest, remove, export/import; CSRF and other readers' interests refused;
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.models import Subscriber, Topic
from papermail.services import interests
from papermail.tokens import Purpose
from tests.test_web_support import add_confirmed, client_for, csrf_of, seed_papers, token_for

BIBTEX = """@misc{a, title = {Sparse Mixture of Experts Routing}}
@misc{b, title = {A Paper Nobody Collected}, eprint = {2612.99999}, archivePrefix = {arXiv}}
"""


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "linear attention")


def views(engine, subscriber_id: int) -> dict[str, interests.InterestView]:
    with Session(engine) as session:
        return {v.name: v for v in interests.list_interests(session, subscriber_id)}


def topic_id(engine, subscriber_id: int, name: str) -> int:
    return views(engine, subscriber_id)[name].id


def test_add_an_interest_from_seeds_and_authors_then_edit_it(client, engine, settings, ada):
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    page = client.get(manage)
    text = unescape(page.text)
    assert 'id="interests"' in text and "Add an interest" in text
    assert f'href="{manage}/interests/{topic_id(engine, ada.id, "linear attention")}"' in text
    csrf = csrf_of(page.text)

    added = client.post(
        manage + "/interests",
        data={
            "csrf": csrf,
            "name": "Sparse models",
            "seeds": "2611.00002\nhttps://arxiv.org/abs/2611.00007v2\n2612.99999",
            "follow": "Turing, Alan",
        },
    )
    assert added.status_code == 200, added.text
    text = unescape(added.text)
    assert "Added the interest “Sparse models”." in text
    assert "Found:</strong> Sparse Mixture of Experts Routing" in text
    assert "Found:</strong> Interpretability with Sparse Autoencoders" in text
    assert "Not found:</strong> 2612.99999" in text
    view = views(engine, ada.id)["Sparse models"]
    assert [s.found for s in view.seeds] == [True, True, False]
    assert view.authors == ("Turing, Alan",) and view.keywords == ()
    assert "Suggested keywords" in text, "found seeds feed suggestions"
    path = f"{manage}/interests/{view.id}"
    assert client.get(path).status_code == 200
    suggestion = unescape(re.search(r'name="keyword" value="([^"]+)"', added.text).group(1))
    assert client.post(path + "/keywords", data={"csrf": csrf, "keyword": suggestion})
    assert views(engine, ada.id)["Sparse models"].keywords == (suggestion,)

    uploaded = client.post(
        path + "/seeds",
        data={"csrf": csrf},
        files={"seed_file": ("refs.bib", BIBTEX.encode(), "application/x-bibtex")},
    )
    assert uploaded.status_code == 200
    text = unescape(uploaded.text)
    assert "1 of 2 seed papers found" in text, text[text.find("<main") :][:1500]
    assert "Not found:</strong> A Paper Nobody Collected" in text

    saved = client.post(
        path,
        data={"csrf": csrf, "keywords": "sparse autoencoders", "excluded": "medical",
              "max_papers": "3"},
    )  # fmt: skip
    assert saved.status_code == 200 and "Saved. The preview shows" in saved.text
    view = views(engine, ada.id)["Sparse models"]
    assert (view.keywords, view.excluded, view.max_papers) == (
        ("sparse autoencoders",),
        ("medical",),
        3,
    )
    page = client.get(path)
    preview = unescape(page.text[page.text.find('class="card preview"') :])
    assert "Based on your keywords and 2 seed papers" in preview, "the digest's profile"
    assert "Interpretability with Sparse Autoencoders" not in preview, "seeds are left out"
    assert f'data-preview-url="{path}/preview"' in page.text
    bad = client.post(path, data={"csrf": csrf, "keywords": "x y", "max_papers": "500"})
    assert bad.status_code == 400 and "between 1 and 100" in unescape(bad.text)

    assert client.post(path + "/follow", data={"csrf": csrf, "author": "Ada Lovelace"})
    assert views(engine, ada.id)["Sparse models"].authors == ("Turing, Alan", "Ada Lovelace")
    client.post(path + "/unfollow", data={"csrf": csrf, "author": "Turing, Alan"})
    assert views(engine, ada.id)["Sparse models"].authors == ("Ada Lovelace",)

    taken = client.post(path + "/rename", data={"csrf": csrf, "name": "Linear Attention"})
    assert taken.status_code == 400 and "you have an interest named" in unescape(taken.text)
    client.post(path + "/rename", data={"csrf": csrf, "name": "Sparsity"})
    assert "Sparsity" in views(engine, ada.id)

    forged = client.post(path + "/remove", data={"csrf": "forged"})
    assert forged.status_code == 403 and "Sparsity" in views(engine, ada.id)
    removed = client.post(path + "/remove", data={"csrf": csrf}, follow_redirects=True)
    assert "Interest removed." in removed.text and list(views(engine, ada.id)) == [
        "linear attention"
    ]
    first = f"{manage}/interests/{topic_id(engine, ada.id, 'linear attention')}"
    assert "Remove “" not in unescape(client.get(first).text), "the last one stays"
    assert client.post(first + "/remove", data={"csrf": csrf}).status_code == 400


def test_interests_of_another_reader_and_bad_input_are_refused(client, engine, settings, ada):
    bob = add_confirmed(engine, "bob@example.org", "state space models")
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    csrf = csrf_of(client.get(manage).text)
    bobs = topic_id(engine, bob.id, "state space models")
    assert client.get(f"{manage}/interests/{bobs}").status_code == 404
    assert client.post(f"{manage}/interests/{bobs}/remove", data={"csrf": csrf}).status_code == 404
    empty = client.post(manage + "/interests", data={"csrf": csrf, "name": "Nothing"})
    assert empty.status_code == 400 and "needs keywords, seed papers" in unescape(empty.text)
    twice = client.post(
        manage + "/interests", data={"csrf": csrf, "name": "linear ATTENTION", "keywords": "x"}
    )
    assert twice.status_code == 400
    with Session(engine) as session:
        assert len(session.exec(select(Topic).where(Topic.subscriber_id == ada.id)).all()) == 1


def test_export_and_import_on_the_manage_page(client, engine, settings, ada):
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    csrf = csrf_of(client.get(manage).text)
    client.post(
        manage + "/interests",
        data={"csrf": csrf, "name": "Sparse models", "keywords": "mixture of experts",
              "seeds": "2611.00002", "follow": "Alan Turing"},
    )  # fmt: skip
    page = client.get(manage)
    assert f'href="{manage}/export.json"' in page.text
    exported = client.get(manage + "/export.json")
    assert exported.status_code == 200 and "attachment" in exported.headers["content-disposition"]
    data = exported.json()
    with Session(engine) as session:
        assert data == interests.export_subscriber(session, session.get(Subscriber, ada.id))
    assert [i["name"] for i in data["interests"]] == ["linear attention", "Sparse models"]

    bob = add_confirmed(engine, "bob@example.org", "state space models")
    bob_manage = f"/manage/{token_for(settings, Purpose.manage, bob)}"
    bob_csrf = csrf_of(client.get(bob_manage).text)
    for _ in range(2):  # idempotent
        done = client.post(
            bob_manage + "/import",
            data={"csrf": bob_csrf},
            files={
                "export_file": ("papermail.json", json.dumps(data).encode(), "application/json")
            },
            follow_redirects=True,
        )
        assert done.status_code == 200 and "Imported:" in done.text
    bobs = views(engine, bob.id)
    assert set(bobs) == {"state space models", "linear attention", "Sparse models"}
    assert bobs["Sparse models"].authors == ("Alan Turing",)
    assert [s.given for s in bobs["Sparse models"].seeds] == ["2611.00002"]
    broken = client.post(
        bob_manage + "/import",
        data={"csrf": bob_csrf},
        files={"export_file": ("x.json", b"{not json", "application/json")},
    )
    assert broken.status_code == 400 and "Nothing was changed" in broken.text
