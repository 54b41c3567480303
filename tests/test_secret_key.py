"""Issue 15.4: production refuses a signing key anyone could guess: the documented placeholders,
anything shorter than 32 characters, and long keys with little entropy."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from papermail.settings import Settings
from tests.test_cli import run


def production(key: str) -> Settings:
    return Settings(_env_file=None, environment="production", secret_key=key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "change-me-papermail-dev-secret",  # the built-in default
        "replace-with-a-long-random-string",  # the .env.example placeholder
        "short",
        "x7#Kq2!vLp9@Zr4$",  # random-looking but 16 characters
        "a" * 64,
        "abababababababababababababababababababab",
        "passwordpasswordpasswordpassword",
    ],
)
def test_production_refuses_guessable_keys(key):
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        production(key)


def test_production_accepts_a_random_key_and_development_anything():
    for key in (secrets.token_urlsafe(32), secrets.token_hex(32), secrets.token_urlsafe(24)):
        assert production(key).secret_key.get_secret_value() == key
    assert Settings(_env_file=None, environment="development", secret_key="short")


def test_the_example_env_file_does_not_start_in_production(tmp_path):
    from tests.conftest import REPO

    placeholder = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )["SECRET_KEY"]
    result = run(["status"], tmp_path, ENVIRONMENT="production", SECRET_KEY=placeholder)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid configuration"), result.stderr
    assert "SECRET_KEY" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert placeholder not in result.stderr, "the key itself is never printed"
