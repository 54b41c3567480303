"""`papermail bounces process FILE|-` and `papermail bounces list`, as an MTA runs them: a real
subprocess per report, on SQLite and PostgreSQL; exit 75 (EX_TEMPFAIL) without a database."""

from __future__ import annotations

from papermail.bounces import verp_address
from tests.bounces_support import (
    DOMAIN,
    SAMPLES,
    SECRET,
    cli_env,
    papermail,
    sample_bytes,
    sent_digest,
    subscribe,
    subscriber,
)
from tests.conftest import free_port


def test_process_a_file_and_standard_input_then_list(engine, settings, tmp_path):
    ada, dave, student = subscribe(
        engine, "ada@example.org", "dave@yahoo.com", "former.student@uni.example"
    )
    assert student == 3  # the Postfix sample's VERP token names subscriber 3
    sent_digest(engine, dave, "yahoo_arf.eml")  # the Yahoo complaint quotes this digest
    env = cli_env(settings)

    done = papermail(["bounces", "process", str(SAMPLES / "postfix_5.1.1.eml")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hard 5.1.1 former.student@uni.example: suspended"

    piped = papermail(["bounces", "process", "-"], env, tmp_path, sample_bytes("yahoo_arf.eml"))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == "complaint dave@yahoo.com: unsubscribed"

    again = papermail(["bounces", "process", "-"], env, tmp_path, sample_bytes("yahoo_arf.eml"))
    assert (again.returncode, again.stdout.strip()) == (0, "1 already recorded")

    reply = papermail(["bounces", "process", "-"], env, tmp_path, sample_bytes("autoreply.eml"))
    assert reply.returncode == 0 and "not a bounce or complaint report: ignored" in reply.stdout

    assert subscriber(engine, student).suspended_at is not None
    assert subscriber(engine, dave).unsubscribed_at is not None
    assert subscriber(engine, ada).active

    listed = papermail(["bounces", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any("former.student@uni.example" in x and "suspended" in x for x in lines)
    assert any("dave@yahoo.com" in x and "unsubscribed" in x and "arf" in x for x in lines)
    assert lines[-1] == "2 event(s)"


def test_the_envelope_recipient_from_the_mta_names_the_subscriber(engine, settings, tmp_path):
    """Postfix's pipe passes ${recipient}: the VERP address the report was sent to."""
    (ada,) = subscribe(engine, "ada@example.org")  # the soft sample names another address
    verp = verp_address(SECRET, DOMAIN, ada, 12)
    args = ["bounces", "process", "--recipient", verp, "-"]
    done = papermail(args, cli_env(settings), tmp_path, sample_bytes("soft_4.2.2_mailbox_full.eml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "soft 4.2.2 full.box@example.net: scored"
    assert subscriber(engine, ada).bounce_score == 0.5


def test_no_database_means_exit_75_so_the_mta_retries(tmp_path):
    from tests.conftest import make_settings

    down = make_settings(
        tmp_path, database_url=f"postgresql+psycopg://papermail@127.0.0.1:{free_port()}/nowhere"
    )
    done = papermail(
        ["bounces", "process", "-"], cli_env(down), tmp_path, sample_bytes("gmail_5.1.1.eml")
    )
    assert done.returncode == 75, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: database unavailable:")
    assert "Traceback" not in done.stderr


def test_an_unreadable_file_is_a_plain_error(tmp_path):
    from tests.conftest import make_settings

    env = cli_env(make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'pm.db'}"))
    done = papermail(["bounces", "process", str(tmp_path / "missing.eml")], env, tmp_path)
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "missing.eml" in done.stderr


def test_serve_needs_a_bounce_domain(tmp_path):
    from tests.conftest import make_settings

    env = cli_env(make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'pm.db'}"))
    done = papermail(
        ["bounces", "serve", "--port", str(free_port())], {**env, "BOUNCE_DOMAIN": ""}, tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: set BOUNCE_DOMAIN: the server accepts mail for that domain only"
    )
