"""`papermail admin create-user|list-users|delete-user|reset-password`: the operator accounts
that log in to the console at /admin. Passwords are typed at a hidden prompt or piped in
(`--password-stdin`), never given as an argument (it would stay in the shell history)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from papermail.errors import PapermailError

admin_app = typer.Typer(help="Operator accounts for the console at /admin.", no_args_is_help=True)


class RoleChoice(StrEnum):
    """`papermail.models.OperatorRole`'s values (kept here so --help imports no models)."""

    viewer = "read-only"
    admin = "admin"


Username = Annotated[str, typer.Argument(metavar="USERNAME", help="The operator's login name.")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    from papermail.services.operators import check_password

    return check_password(password)


def _engine():
    from papermail import cli

    return cli._setup()[1]


@admin_app.command("create-user")
def create_user(
    username: Username,
    role: Annotated[
        RoleChoice, typer.Option("--role", help="read-only sees everything; admin also acts.")
    ] = RoleChoice.viewer,
    totp: Annotated[
        bool, typer.Option("--totp", help="Require a TOTP code at login; prints its secret once.")
    ] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add an operator account."""
    from papermail.db import session_scope
    from papermail.models import OperatorRole
    from papermail.services import operators

    name = operators.clean_username(username)
    password = _password(password_stdin)
    with session_scope(_engine()) as session:
        operator = operators.create_operator(
            session, username=name, password=password, role=OperatorRole(role.value), totp=totp
        )
        uri = operators.totp_uri(operator) if totp else ""
    typer.echo(f"created operator {operator.username!r} ({operator.role})")
    if uri:
        typer.echo("two-step login: add this account to an authenticator app (shown only once)")
        typer.echo(f"  secret: {operator.totp_secret}")
        typer.echo(f"  uri:    {uri}")


@admin_app.command("list-users")
def list_users() -> None:
    """The operator accounts: role, TOTP, last login, lock."""
    from papermail.db import session_scope
    from papermail.models import utcnow
    from papermail.services import operators

    with session_scope(_engine()) as session:
        found = operators.list_operators(session)
    if not found:
        typer.echo("no operators yet: papermail admin create-user NAME --role admin")
        return
    now = utcnow()
    for o in found:
        last = o.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if o.last_login_at else "never"
        locked = (
            f", locked until {o.locked_until:%H:%M UTC}"
            if o.locked_until and o.locked_until > now
            else ""
        )
        totp = "TOTP" if o.totp_secret else "password only"
        typer.echo(f"{o.username}\t{o.role}\t{totp}\tlast login {last}{locked}")


@admin_app.command("delete-user")
def delete_user(username: Username) -> None:
    """Remove an operator account (its sessions end at once)."""
    from papermail.db import session_scope
    from papermail.services import operators

    with session_scope(_engine()) as session:
        if not operators.delete_operator(session, username):
            raise PapermailError(f"no operator {username!r}")
    typer.echo(f"deleted operator {username.strip().lower()!r}")


@admin_app.command("reset-password")
def reset_password(username: Username, password_stdin: PasswordStdin = False) -> None:
    """Set a new password: open sessions end, a lockout is lifted."""
    from papermail.db import session_scope
    from papermail.services import operators

    password = _password(password_stdin)
    with session_scope(_engine()) as session:
        operator = operators.reset_password(session, username, password)
    typer.echo(f"new password set for {operator.username!r}")
