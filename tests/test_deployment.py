"""The production stack's files agree with the code: compose commands are real CLI verbs,
environment names are real settings, and production refuses unsafe configuration."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import pytest
import yaml
from pydantic import ValidationError
from typer.main import get_command

from papermail.cli import app
from papermail.settings import DEFAULT_SECRET, Settings, settings_table

REPO = Path(__file__).resolve().parents[1]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
APP_SERVICES = {"migrate", "web", "worker", "beat", "flower"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def resolve_verb(args: list[str]):
    """Walk `papermail a b ...` through the command tree; fail on an unknown verb or option."""
    command = get_command(app)
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"`papermail {' '.join(args)}`: no verb {name!r}"
        command = sub
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"`papermail {' '.join(args)}`: no {word}"
    return command


def test_stack_has_every_service_with_healthchecks(compose):
    services = compose["services"]
    assert {"redis", "postgres", "mailpit", "web", "worker", "beat", "migrate"} <= set(services)
    for name in ("redis", "postgres", "mailpit", "web"):
        assert "healthcheck" in services[name], name
    assert "8025:8025" in services["mailpit"]["ports"]
    assert services["postgres"]["volumes"], "PostgreSQL data lives in a volume"
    for name in APP_SERVICES - {"migrate"}:
        conditions = services[name]["depends_on"]
        assert conditions["migrate"]["condition"] == "service_completed_successfully", name
        assert conditions["postgres"]["condition"] == "service_healthy", name


def test_app_commands_are_real_cli_verbs(compose):
    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        if command[0] == "papermail":
            resolve_verb(command[1:])
        else:
            assert command[:3] == ["celery", "-A", "workers.app"], name
            assert command[3] in {"worker", "beat", "flower"}, name


def test_app_environment_names_are_settings(compose):
    env_example = [
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        assert set(environment) <= SETTING_NAMES, set(environment) - SETTING_NAMES
    assert set(env_example) <= SETTING_NAMES, set(env_example) - SETTING_NAMES
    web = compose["services"]["web"]
    port = web["command"][web["command"].index("--port") + 1]
    assert f"{port}:{port}" in web["ports"]
    assert web["environment"]["SMTP_PORT"] == "1025"  # mailpit's SMTP port


def test_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    for line in settings_table().splitlines()[2:]:
        assert line in readme, f"README configuration table is stale: {line}"


def test_production_refuses_the_default_signing_key():
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, environment="production", secret_key=DEFAULT_SECRET)
    with pytest.raises(ValidationError, match="shorter than 32"):
        Settings(_env_file=None, environment="production", secret_key="a-long-private-value")
    ok = Settings(
        _env_file=None, environment="production", secret_key="kR4v_Tq9-Lx2wZp7Hn3sYb8Fj6Dm1Gc5"
    )
    assert ok.environment == "production"


def test_secrets_never_appear_in_reprs_or_logs(caplog):
    settings = Settings(_env_file=None, secret_key="s3cret-signing", smtp_password="hunter22")
    logging.getLogger("papermail.test").warning("settings: %s / %r", settings, settings)
    shown = repr(settings) + str(settings) + settings.model_dump_json() + caplog.text
    assert "s3cret-signing" not in shown and "hunter22" not in shown


def test_healthz_reports_schema_state(tmp_path):
    from fastapi.testclient import TestClient

    from papermail.db import create_tables, make_engine
    from papermail.web import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    engine = make_engine(settings)
    client = TestClient(create_app(settings, engine=engine))
    assert client.get("/healthz").status_code == 503  # not migrated yet
    create_tables(engine)
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["ok"] is True
