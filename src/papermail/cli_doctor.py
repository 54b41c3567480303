"""`papermail doctor` (is this installation able to deliver, and what to fix) and
`papermail dkim keygen` (a signing key and the DNS record to publish for it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True)

MARKS = {"ok": "[green]ok[/green]  ", "warn": "[yellow]warn[/yellow]", "FAIL": "[red]FAIL[/red]"}


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per check.")] = False,
    queue_limit: Annotated[
        int, typer.Option(help="Tasks waiting in the broker's queue above which to warn.")
    ] = 1000,
) -> None:
    """Check the live configuration: SMTP, web, DNS (SPF, DKIM, DMARC), secret, database,
    beat, broker. One line each; exits 1 when something blocks delivery."""
    from papermail import cli, doctor_probes
    from papermail.doctor import exit_code

    checks = doctor_probes.run_checks(doctor_probes.AsConfigured(), queue_limit=queue_limit)
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        for check in checks:
            cli.console.print(
                f"{MARKS[check.status.value]} {check.name:<12} {check.message}", highlight=False
            )
    raise typer.Exit(exit_code(checks))


@dkim_app.command("keygen")
def keygen(
    selector: Annotated[str, typer.Option(help="The selector to publish the key under.")],
    out: Annotated[
        Path, typer.Option(help="Where to write the private key (PEM, mode 600).")
    ] = Path("dkim.pem"),
    kind: Annotated[
        str, typer.Option("--type", help="rsa (2048 bits, read everywhere) or ed25519.")
    ] = "rsa",
    domain: Annotated[
        str, typer.Option(help="The signing domain; default: DKIM_DOMAIN or MAIL_FROM's.")
    ] = "",
) -> None:
    """Write a new private key and print the TXT record to publish for it."""
    from papermail import dkim
    from papermail.doctor_probes import AsConfigured
    from papermail.errors import PapermailError

    if kind not in ("rsa", "ed25519"):
        raise PapermailError("--type is rsa or ed25519")
    if out.exists():
        raise PapermailError(f"{out} exists: choose another --out (never overwritten)")
    key_kind: Literal["rsa", "ed25519"] = "ed25519" if kind == "ed25519" else "rsa"
    pem = dkim.generate_key(key_kind)
    out.touch(mode=0o600)
    out.write_bytes(pem)
    configured = dkim.signing_domain(AsConfigured())
    domain = domain or configured
    record = dkim.load_key(pem).txt_record
    quoted = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    typer.echo(f"wrote {out}; publish this TXT record, then set the settings below:\n")
    typer.echo(f"{selector}._domainkey.{domain}. IN TXT {quoted}\n")
    typer.echo(f"DKIM_SELECTOR={selector}\nDKIM_PRIVATE_KEY_FILE={out.resolve()}")
    if domain != configured:
        typer.echo(f"DKIM_DOMAIN={domain}")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
    app.add_typer(dkim_app, name="dkim")
