"""The one typed place for configuration: every setting comes from the environment here.

Nothing else in papermail reads ``os.environ``; code receives a ``Settings`` object so that tests
and the CLI can build their own.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-papermail-dev-secret"
PACKAGE_DIR = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


def default_templates_dir() -> Path:
    """Templates ship inside the wheel; in a source checkout they sit at the repository top."""
    return _first_existing(PACKAGE_DIR / "templates", PACKAGE_DIR.parents[1] / "templates")


def default_var_dir() -> Path:
    """One per-user data directory (platformdirs: ~/.local/share/papermail on Linux, or
    $XDG_DATA_HOME/papermail), so every command finds the same database wherever it runs."""
    from platformdirs import user_data_path

    return user_data_path("papermail", appauthor=False)


def default_samples_dir() -> Path:
    """Sample daily-papers pages bundled with the package, used by the demo."""
    return PACKAGE_DIR / "samples"


PLACEHOLDER_SECRETS = frozenset({DEFAULT_SECRET, "replace-with-a-long-random-string"})
MIN_SECRET_LENGTH = 32


def weak_secret(key: str) -> str | None:
    """Why `key` is too guessable to sign links in production, or None: a documented
    placeholder, under MIN_SECRET_LENGTH characters, or little entropy (few distinct
    characters, under 96 bits by character frequencies, or repeats that compress well)."""
    if not key:
        return "is empty"
    if key in PLACEHOLDER_SECRETS or "change-me" in key or "replace-with" in key:
        return "is the documented placeholder"
    if len(key) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    counts = Counter(key)
    bits = -sum(n * math.log2(n / len(key)) for n in counts.values())
    packed = len(zlib.compress(key.encode(), 9)) - 8  # zlib's header and checksum
    if len(counts) < 10 or bits < 96 or packed < 0.75 * len(key):
        return "has too little entropy (repeated or too few different characters)"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses a placeholder, short (< 32) or low-entropy SECRET_KEY.",
    )
    var_dir: Path = Field(
        default_factory=default_var_dir,
        description="Where the SQLite database and outbox live; default: the per-user data "
        "directory (`~/.local/share/papermail` on Linux).",
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means SQLite at `VAR_DIR/papermail.db`."
    )
    redis_url: str = Field(
        "", description="Celery broker and result backend; empty runs tasks in-process (eager)."
    )
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET), description="Signs every link token (itsdangerous)."
    )
    base_url: str = Field(
        "http://localhost:8000", description="Public URL of the web app, used in email links."
    )

    mail_backend: Literal["outbox", "smtp"] = Field(
        "outbox", description="`outbox` writes .eml/.html files; `smtp` delivers over SMTP."
    )
    outbox_dir: Path | None = Field(None, description="Outbox folder; default `VAR_DIR/outbox`.")
    mail_from: str = Field("papermail <digest@papermail.localhost>", description="From header.")
    unsubscribe_mailto: str = Field(
        "unsubscribe@papermail.localhost", description="Address in the List-Unsubscribe mailto."
    )
    smtp_host: str = Field("localhost", description="SMTP relay host.")
    smtp_port: int = Field(25, description="SMTP relay port.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "none", description="`starttls` upgrades a plain connection, `tls` is implicit TLS."
    )
    smtp_username: str = Field("", description="SMTP login; empty sends without AUTH.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password (never logged).")
    smtp_timeout: float = Field(30.0, description="Seconds before an SMTP operation gives up.")

    templates_dir: Path = Field(
        default_factory=default_templates_dir, description="Jinja templates (email/ and web/)."
    )
    samples_dir: Path = Field(
        default_factory=default_samples_dir, description="Sample pages the demo ingests."
    )

    min_score: float = Field(0.08, description="Papers scoring below this are never sent.")
    title_weight: float = Field(
        3.0, description="A keyword in a paper's title counts as this many in its abstract."
    )
    negative_factor: float = Field(
        0.0, description="Score multiplier for a paper with an excluded keyword: 0 excludes it."
    )
    popularity_prior: float = Field(
        0.05, description="Boost for upvoted papers: up to this share of the score at 100 upvotes."
    )
    diversity_lambda: float = Field(
        0.9, description="Relevance vs. novelty in a digest (MMR); 1 ranks by relevance only."
    )
    feedback_weight: float = Field(
        0.5, description="How far ratings move a profile toward liked papers (Rocchio); 0 is off."
    )
    classifier_min_ratings: int = Field(
        10, description="Ratings before a per-subscriber classifier joins the keyword score."
    )
    classifier_weight: float = Field(
        0.3, description="Share of the final score given to that classifier."
    )
    synonyms_file: str = Field(
        "", description="A file of extra synonyms, same format as the packaged `synonyms.txt`."
    )
    pseudo_feedback: float = Field(
        0.4,
        description="How far each keyword's scores move toward its best papers' centroid "
        "(pseudo-relevance feedback: finds papers that say it in other words); 0 is off.",
    )
    keyword_context: float = Field(
        0.0,
        description="Share of a paper's score that depends on matching a profile's other "
        "keywords too (tells the senses of a word apart); 0 is off: 0.5 sent 15% fewer "
        "off-topic papers on the dev judgements but costs ~35% more scoring time.",
    )
    aspect_balance: float = Field(
        0.0,
        description="xQuAD weight: how strongly a digest covers each of a profile's keywords "
        "in turn; 0 is off (on the dev judgements it cost relevance and changed no coverage).",
    )
    semantic: bool = Field(
        False,
        description="Fuse a sentence-embedding similarity into ranking; needs "
        "`papermail[semantic]`. Ingest then stores one vector per paper.",
    )
    semantic_weight: float = Field(
        0.3, description="With SEMANTIC: the share of each keyword's score that is semantic."
    )
    corpus_days: int = Field(90, description="Days of stored papers the TF-IDF model is fitted on.")
    lookback_days: int = Field(
        7, description="How far back a subscriber's first digest looks for new papers."
    )
    send_empty_digests: bool = Field(False, description="Send a digest even when no paper matched.")
    show_thumbnails: bool = Field(
        False,
        description="Show each paper's thumbnail in digests (remote images: a privacy choice).",
    )
    compact_after: int = Field(
        20, ge=0, description="Papers past this many in a digest are compact: title, links, why."
    )
    daily_sources: list[str] = Field(
        default_factory=lambda: ["hf", "arxiv:cs.LG+cs.CL+cs.CV"],
        description="What the daily job ingests: `hf`, `arxiv:CATS`, or file/folder paths (JSON).",
    )
    http_timeout: float = Field(20.0, description="Seconds for one HTTP request to a source.")
    http_retries: int = Field(3, description="Attempts for a failing HTTP request to a source.")
    confirm_max_age_hours: int = Field(
        48, ge=1, description="Hours a subscription confirmation link stays valid."
    )
    manage_link_max_age_days: int = Field(
        365,
        ge=1,
        description="Days a link to a subscriber's settings works; then the page offers a new "
        "one by email. Unsubscribe links never expire.",
    )
    subscribe_limit_per_address: int = Field(
        3, ge=1, description="Sign-up or link mails one address may request per rate window."
    )
    subscribe_limit_per_ip: int = Field(
        20, ge=1, description="Sign-up or link requests one client IP may make per rate window."
    )
    rate_limit_window_minutes: int = Field(
        60, ge=1, description="Length of the window the two limits above count over."
    )
    # Scheduled delivery: beat, send tasks, retries, bounces, throttling.
    ingest_cron: str = Field(
        "30 1 * * *",
        description="When beat ingests `DAILY_SOURCES`: a UTC crontab (minute hour day month "
        "weekday); empty disables the job.",
    )
    dispatch_every_minutes: float = Field(
        5.0,
        ge=0,
        description="How often beat sends the digests whose local send time has come and "
        "re-queues stalled sends; 0 disables the job.",
    )
    score_batch_size: int = Field(
        5000, ge=1, description="Subscribers one scoring task ranks in one batch."
    )
    send_chunk_size: int = Field(
        200, ge=1, description="Digests one send task delivers over one SMTP connection."
    )
    send_record_batch: int = Field(
        50,
        ge=1,
        description="Sent digests recorded `sent` in one UPDATE (or after 0.5 s): a worker "
        "killed before that commit sends up to this many again (same Message-ID) after the lease.",
    )
    send_max_retries: int = Field(
        8, ge=0, description="Retries of a send task after a temporary SMTP failure (4xx, down)."
    )
    send_retry_backoff: float = Field(
        5.0, gt=0, description="Seconds before the first retry; doubles each time, jittered."
    )
    send_retry_backoff_max: float = Field(
        600.0, gt=0, description="Longest wait between two retries of a send task, in seconds."
    )
    send_lease_seconds: int = Field(
        900,
        ge=1,
        description="A delivery `sending` (its worker died) or `pending` this long is re-queued "
        "by the dispatcher; keep it above SEND_RETRY_BACKOFF_MAX and twice SMTP_TIMEOUT.",
    )
    bounce_limit: int = Field(
        3, ge=1, description="Hard bounces in a row after which a subscriber is suspended."
    )
    # Bounces and complaints that arrive later as mail (issue 14; `papermail bounces ...`).
    bounce_domain: str = Field(
        "",
        description="Domain of the VERP bounce address: digests go out with the envelope sender "
        "`bounces+<signed id>@BOUNCE_DOMAIN`; empty sends from MAIL_FROM's address (VERP off).",
    )
    bounce_score_limit: float = Field(
        5.0,
        gt=0,
        description="Bounce score (+1 hard, +0.5 soft, once a day) at which a subscriber is "
        "suspended (Mailman's default).",
    )
    bounce_stale_days: int = Field(
        7, ge=1, description="Days without a counted bounce after which the score starts over."
    )
    bounce_imap_host: str = Field(
        "", description="IMAP server of a bounce mailbox for `papermail bounces poll`; empty: off."
    )
    bounce_imap_port: int = Field(993, description="IMAP over TLS port of the bounce mailbox.")
    bounce_imap_user: str = Field("", description="Login of the bounce mailbox.")
    bounce_imap_password: SecretStr = Field(
        SecretStr(""), description="Password of the bounce mailbox (never logged)."
    )
    bounce_imap_folder: str = Field("INBOX", description="Folder of the bounce mailbox to read.")
    bounce_imap_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) for an IMAP server with a private certificate."
    )
    bounce_poll_minutes: float = Field(
        10.0,
        ge=0,
        description="How often beat polls the bounce mailbox when BOUNCE_IMAP_HOST is set; "
        "0 disables the job.",
    )
    smtp_rate_limit: float = Field(
        0.0,
        ge=0,
        description="Most messages a second through the SMTP relay, shared by all workers "
        "(through Redis when REDIS_URL is set); 0 means no limit.",
    )
    broker_visibility_timeout: int = Field(
        3600,
        ge=1,
        description="Seconds before Redis hands the task of a dead worker to another; keep it "
        "above the longest task and SEND_RETRY_BACKOFF_MAX.",
    )
    task_events: bool = Field(
        False, description="Workers send task events for Flower (like `celery worker -E`)."
    )
    # Relay webhooks for bounces and complaints, and metrics (issue 14).
    webhook_max_bytes: int = Field(
        1_000_000, ge=1024, description="Largest webhook body accepted, in bytes (413 above)."
    )
    ses_topic_arns: list[str] = Field(
        default_factory=list,
        description="SNS topics whose SES notifications /webhooks/ses accepts (JSON list); "
        "empty turns the SES webhook off (any AWS account can sign for its own topic).",
    )
    ses_cert_host_pattern: str = Field(
        r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$",
        description="Hosts SNS signing certificates (SigningCertURL) and SubscribeURLs may come "
        "from; always over HTTPS.",
    )
    sendgrid_webhook_public_key: str = Field(
        "",
        description="The Event Webhook's verification key (base64 DER, as SendGrid shows it); "
        "empty turns /webhooks/sendgrid off.",
    )
    postmark_webhook_user: str = Field(
        "", description="Basic-auth user in Postmark's webhook URL; empty turns it off."
    )
    postmark_webhook_password: SecretStr = Field(
        SecretStr(""), description="Basic-auth password in Postmark's webhook URL."
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="Bearer token GET /metrics requires (and the worker's endpoint does not); "
        "empty leaves /metrics open: keep it off the public internet then.",
    )
    worker_metrics_port: int = Field(
        0, ge=0, description="Port a Celery worker serves Prometheus metrics on; 0: none."
    )
    prometheus_multiproc_dir: str = Field(
        "",
        description="prometheus_client's multiprocess directory (prefork workers, several web "
        "processes); prometheus_client reads it from the process environment itself.",
    )
    dkim_selector: str = Field(
        "",
        description="DKIM selector: papermail signs every mail with DKIM_PRIVATE_KEY_FILE "
        "(for relays that do not sign); empty turns signing off.",
    )
    dkim_private_key_file: Path | None = Field(
        None,
        description="PEM private key for DKIM (RSA of 2048+ bits or Ed25519); "
        "`papermail dkim keygen` writes one and prints its DNS record.",
    )
    dkim_domain: str = Field("", description="DKIM d= domain; empty means the From domain.")
    dns_resolver: str = Field(
        "",
        description="`host:port` of the DNS server `papermail doctor` asks; empty means the "
        "system's resolvers.",
    )

    # The operator console at /admin (issue 14).
    admin_session_hours: float = Field(
        12.0, gt=0, description="Hours an operator stays logged in to /admin."
    )
    admin_max_failed_logins: int = Field(
        5, ge=1, description="Failed logins (password or TOTP) after which an account locks."
    )
    admin_lockout_minutes: float = Field(
        15.0, gt=0, description="Minutes a locked operator account stays locked."
    )
    admin_login_limit_per_ip: int = Field(
        30,
        ge=1,
        description="Login attempts one client IP may make per RATE_LIMIT_WINDOW_MINUTES.",
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production":
            problem = weak_secret(self.secret_key.get_secret_value())
            if problem:
                raise ValueError(
                    f"SECRET_KEY {problem}: production needs a private random key, e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return self

    @model_validator(mode="after")
    def _refuse_unusable_dkim_key(self) -> Settings:
        if bool(self.dkim_selector) != (self.dkim_private_key_file is not None):
            raise ValueError("set both DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE, or neither")
        if self.dkim_private_key_file is not None:
            from papermail.dkim import DkimKeyError, read_key

            try:
                read_key(str(self.dkim_private_key_file))
            except DkimKeyError as exc:
                raise ValueError(f"DKIM_PRIVATE_KEY_FILE: {exc}") from None
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'papermail.db').as_posix()}"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """The README's configuration table, generated so that it cannot drift from the code."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(computed)" if name.endswith("_dir") else field.default_factory()
        else:
            default = field.default
        if isinstance(default, SecretStr):
            default = "dev placeholder" if default.get_secret_value() else ""
        if isinstance(default, list):
            default = json.dumps(default)
        shown = f"`{default}`" if default not in (None, "") else "(empty)"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def write_readme(readme: Path) -> None:
    """Replace the table between the README's settings markers."""
    text = readme.read_text(encoding="utf-8")
    begin, end = "<!-- settings:begin -->\n", "\n<!-- settings:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + settings_table() + end + tail, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if "--write-readme" in sys.argv:
        write_readme(Path("README.md"))
    else:
        print(settings_table())
