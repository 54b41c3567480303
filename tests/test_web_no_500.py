"""Issue 15 #11: hostile input gets a clear answer, never a 500 (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.db import session_scope
from papermail.models import Paper, Subscriber
from papermail.services import digests
from papermail.services.subscriptions import InvalidInput, normalize_email
from papermail.tokens import Purpose
from tests.test_web_support import add_confirmed, client_for, seed_papers, subscribe, token_for

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine, now=NOW)
    with client_for(settings, engine) as test_client:  # a server error raises in the test
        yield test_client


def _subscribers(engine) -> list[Subscriber]:
    with Session(engine) as session:
        return list(session.exec(select(Subscriber)))


@pytest.mark.parametrize("keywords", ["linear\x00attention", "moe\x1b[31m", "a\x7fb"])
def test_control_characters_in_keywords_are_refused(client, engine, keywords):
    answer = subscribe(client, "ada@example.org", keywords)
    assert answer.status_code in (200, 400, 422)
    assert "control characters" in answer.text
    assert _subscribers(engine) == []
    answer = subscribe(client, "ada@example.org", "linear attention", excluded="x\x00y")
    assert "control characters" in answer.text and _subscribers(engine) == []


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "9999-01-01", "1000-02-29"])
def test_extreme_days_are_not_found(client, day):
    answer = client.get(f"/papers/{day}")
    assert answer.status_code == 404


def test_a_title_with_control_characters_keeps_the_feed_valid_xml(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    with session_scope(engine) as session:
        session.add(
            Paper(
                id="ctl-1",
                title="Linear attention \x1b[1mbold\x0b\x01 and \ufffe more",
                abstract="linear attention \x08 everywhere",
                first_seen_at=NOW,
                listing_day=NOW.date(),
            )
        )
    report = digests.score_day(engine, settings, issue_date=NOW.date(), now=NOW)
    assert report.to_send
    answer = client.get(f"/feed/{token_for(settings, Purpose.feed, ada)}.atom")
    assert answer.status_code == 200
    root = ET.fromstring(answer.content)  # strict XML 1.0: raised on the control characters
    content = "".join(root.itertext())
    assert "Linear attention [1mbold and  more" in content


@pytest.mark.parametrize("address", ["üser@example.org", "用户@例子.广告", "josé@example.org"])
def test_non_ascii_local_parts_are_refused_clearly(client, engine, address):
    with pytest.raises(InvalidInput, match="not supported"):
        normalize_email(address)
    answer = subscribe(client, address, "linear attention")
    assert answer.status_code in (200, 400, 422)
    assert "not supported" in answer.text
    assert _subscribers(engine) == []


def test_an_international_domain_is_kept_in_its_ascii_form():
    assert normalize_email("Ada@Bücher.example") == "ada@xn--bcher-kva.example"
