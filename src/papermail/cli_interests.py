"""`papermail interests add|list|remove`, `papermail export` and `papermail import` (issue 13):
named interests with keywords, exclusions, seed papers and followed authors, and taking them
to another papermail. Like the rest of the CLI, heavy modules are imported inside each verb."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from papermail.errors import PapermailError

interests_app = typer.Typer(
    help="Named interests: keywords, seed papers, followed authors.", no_args_is_help=True
)

Email = Annotated[str, typer.Argument(metavar="EMAIL", help="The subscriber's address.")]
Name = Annotated[str, typer.Argument(metavar="NAME", help='The interest\'s name, e.g. "LLM".')]


def _setup():
    from papermail import cli

    return cli._setup()


def _console():
    from papermail import cli

    return cli.console


def _subscriber(session, email: str):
    from papermail.services import subscriptions

    subscriber = subscriptions.get_by_email(session, subscriptions.normalize_email(email))
    if subscriber is None:
        raise PapermailError(f"no subscriber {email!r}")
    return subscriber


@interests_app.command("add")
def interests_add(
    email: Email,
    name: Name,
    keyword: Annotated[
        list[str] | None,
        typer.Option("--keyword", "-k", help="Keyword (repeat); replaces the interest's."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="Excluded keyword (repeat); replaces the interest's."),
    ] = None,
    seed: Annotated[
        list[str] | None,
        typer.Option("--seed", help="Seed paper: arXiv id or URL, or a title (repeat)."),
    ] = None,
    seed_file: Annotated[
        Path | None,
        typer.Option("--seed-file", help="Seed papers from a BibTeX or RIS export."),
    ] = None,
    follow: Annotated[
        list[str] | None, typer.Option("--follow", help='Follow an author, "Jane Doe" (repeat).')
    ] = None,
    max_papers: Annotated[
        int | None,
        typer.Option("--max-papers", min=1, max=100, help="Its papers per digest (new: 10)."),
    ] = None,
) -> None:
    """Add a named interest, or update one: only the options given change (seeds and authors
    are added). Says which seed papers were found in the corpus."""
    from papermail.db import session_scope
    from papermail.services import interests

    _, engine = _setup()
    file_text = None
    if seed_file is not None:
        try:
            file_text = seed_file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise PapermailError(f"cannot read {seed_file}: {exc.strerror}") from exc
    with session_scope(engine) as session:
        subscriber = _subscriber(session, email)
        result = interests.save_interest(
            session,
            subscriber,
            name,
            keywords=keyword or None,
            excluded=exclude,
            seeds=seed or (),
            seed_file_text=file_text,
            follow=follow or (),
            max_papers=max_papers,
        )
        verb = "added" if result.created else "updated"
        lines = [f"{verb} interest {result.topic.name!r} of {subscriber.email}"]
        for s in result.seeds:
            if s.found:
                lines.append(f"  seed found: {s.given} ({s.paper_id}: {s.title})")
            else:
                lines.append(f"  seed not found: {s.given}")
    found = sum(s.found for s in result.seeds)
    if result.seeds:
        lines.append(f"  {found} of {len(result.seeds)} seed papers found in the corpus")
    for line in lines:
        _console().print(line, markup=False, highlight=False)


@interests_app.command("list")
def interests_list(
    email: Email,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """A subscriber's interests with keywords, exclusions, seed papers and followed authors."""
    import dataclasses
    import json

    from papermail.db import session_scope
    from papermail.services import interests

    _, engine = _setup()
    with session_scope(engine) as session:
        views = interests.list_interests(session, _subscriber(session, email).id)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(v) for v in views], indent=2))
        return
    out = _console()
    for v in views:
        out.print(f"{v.name}  ({v.max_papers} papers per digest)", markup=False, highlight=False)
        out.print(f"  keywords: {', '.join(v.keywords) or '-'}", markup=False, highlight=False)
        if v.excluded:
            out.print(f"  excluded: {', '.join(v.excluded)}", markup=False, highlight=False)
        for s in v.seeds:
            state = f"found: {s.paper_id}" if s.found else "not found"
            out.print(f"  seed: {s.given} ({state})", markup=False, highlight=False)
        if v.authors:
            out.print(f"  follows: {', '.join(v.authors)}", markup=False, highlight=False)


@interests_app.command("remove")
def interests_remove(email: Email, name: Name) -> None:
    """Remove a named interest (its keywords, seeds and authors); ratings and digests stay."""
    from papermail.db import session_scope
    from papermail.services import interests

    _, engine = _setup()
    with session_scope(engine) as session:
        subscriber = _subscriber(session, email)
        if not interests.remove_interest(session, subscriber, name):
            raise PapermailError(f"{subscriber.email} has no interest {name!r}")
    _console().print(f"removed interest {name!r}", markup=False, highlight=False)


def export_command(
    email: Email,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Export a subscriber's interests (keywords, exclusions, seeds, followed authors) and
    ratings as JSON, for `papermail import` on another papermail."""
    import json

    from papermail.db import session_scope
    from papermail.services import interests

    _, engine = _setup()
    with session_scope(engine) as session:
        data = interests.export_subscriber(session, _subscriber(session, email))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        _console().print(f"wrote {out}", markup=False, highlight=False)


def import_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A `papermail export` file.")],
    email: Annotated[
        str | None, typer.Option("--email", help="Import for this address instead.")
    ] = None,
) -> None:
    """Import an export (idempotent): the subscriber, their interests, and their ratings of
    papers this corpus has."""
    import json

    from papermail.db import session_scope
    from papermail.services import interests

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PapermailError(f"cannot read {file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PapermailError(f"{file} is not JSON: {exc}") from exc
    _, engine = _setup()
    with session_scope(engine) as session:
        report = interests.import_subscriber(session, data, email=email)
        address = report.subscriber.email
    verb = "created" if report.created else "updated"
    out = _console()
    out.print(
        f"{verb} {address}: {report.interests} interest(s), {report.ratings} rating(s)",
        markup=False,
        highlight=False,
    )
    if report.ratings_missing:
        out.print(
            f"  {len(report.ratings_missing)} rated paper(s) not in this corpus: "
            + "; ".join(report.ratings_missing[:5]),
            markup=False,
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(interests_app, name="interests")
    app.command("export")(export_command)
    app.command("import")(import_command)
