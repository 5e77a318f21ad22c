"""``heal kb search`` and ``heal kb index``: the knowledge base of past remediations and
operator runbooks, in heal's database."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from heal.cli import render
from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, ProgressBar, examples, group, out, print_json, warn

if TYPE_CHECKING:
    from heal.decide.knowledge import IndexReport
    from heal.decide.tiers import KnowledgeHit
    from heal.settings import Settings

app = group("Knowledge base: search past remediations and runbooks, index runbooks.")

PROGRESS_FROM = 20  # files: fewer are indexed before a bar would be worth drawing
EXCERPT = 160

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="HEAL_CONFIG",
        show_envvar=True,
        help="the policy YAML whose decide.knowledge.dirs are indexed when no --dir is given",
        show_default=False,
    ),
]
NO_DIRS = (
    "no runbook directories: pass --dir, or list them under decide.knowledge.dirs in the "
    "policy (--config or HEAL_CONFIG)"
)


class Kind(StrEnum):
    REMEDIATION = "remediation"
    RUNBOOK = "runbook"


@app.command(
    "search",
    epilog=examples(
        'heal kb search "pod crash looping shop"',
        "heal kb search 'disk full' --kind runbook --limit 3",
        "heal kb search KubePodCrashLooping --json | jq '.[0].text'",
    ),
)
def search(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="free text: words, an alert's name, labels")
    ],
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="at most N hits")] = 10,
    kind: Annotated[Kind | None, typer.Option("--kind", help="only entries of this kind")] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Past remediations and runbook sections matching any of the words, best first
    (the more of them an entry has, the higher; words in its title count most)."""
    settings = make_settings(database_url=database_url)
    hits = run(_search(settings, query, limit, kind.value if kind else None), settings.database_url)
    if as_json:
        print_json([_hit_json(hit) for hit in hits])
        return
    console = out()
    if not hits:
        console.print("nothing found")
        return
    table = Table(title=f"Knowledge base: {len(hits)} hits", title_justify="left")
    table.add_column("score", justify="right")
    for name in ("kind", "title", "ref", "excerpt"):
        table.add_column(name, overflow="fold")
    for hit in hits:
        table.add_row(
            f"{hit.score:.3g}", hit.kind, Text(hit.title), Text(hit.ref), Text(_excerpt(hit.text))
        )
    console.print(table)


async def _search(
    settings: Settings, query: str, limit: int, kind: str | None
) -> list[KnowledgeHit]:
    from heal.decide.knowledge import KnowledgeBase

    async with open_database(settings) as database:
        await require_schema(database)
        return await KnowledgeBase(database).search(query, limit, kind=kind)


def _hit_json(hit: KnowledgeHit) -> dict[str, Any]:
    return {
        "kind": hit.kind,
        "title": hit.title,
        "ref": hit.ref,
        "score": hit.score,
        "text": hit.text,
    }


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT else line[: EXCERPT - 1].rstrip() + "…"


@app.command(
    "index",
    epilog=examples(
        "heal kb index -c heal.yaml",
        "heal kb index --dir runbooks --dir /srv/sre/playbooks",
        "heal kb index --dir runbooks --json",
    ),
)
def index(
    dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--dir",
            "-d",
            metavar="DIR",
            help="a directory of Markdown runbooks (repeatable) [default: the policy's]",
            show_default=False,
        ),
    ] = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """(Re)index Markdown runbooks, one entry per ## section: changed files are read
    again, unchanged ones skipped, deleted ones removed (works while heal runs)."""
    settings = make_settings(
        database_url=database_url, config=str(config) if config is not None else None
    )
    given = [str(directory) for directory in dirs or []]
    chosen, report = run(_index(settings, given, quiet=as_json), settings.database_url)
    if as_json:
        print_json({"dirs": chosen, **report.as_dict()})
        return
    for warning in report.warnings:
        warn(warning)
    out().print(
        f"[green]indexed {report.files} runbook files[/green] from "
        f"{render.markup(', '.join(chosen))}: {report.added} new, {report.changed} changed, "
        f"{report.unchanged} unchanged, {report.removed} removed "
        f"({report.sections} sections written)",
        soft_wrap=True,
    )


async def _index(
    settings: Settings, given: list[str], *, quiet: bool
) -> tuple[list[str], IndexReport]:
    from heal.decide.knowledge import KnowledgeBase

    chosen = given or _policy_dirs(settings)
    async with open_database(settings) as database:
        await require_schema(database)
        bar = ProgressBar("indexing runbooks", enabled=not quiet, from_count=PROGRESS_FROM)
        try:
            report = await KnowledgeBase(database).index_runbooks(chosen, bar.update)
        finally:
            bar.stop()
    return chosen, report


def _policy_dirs(settings: Settings) -> list[str]:
    from heal.policy.loader import load_policy

    if not settings.config:
        raise CliError(NO_DIRS, code=2)
    dirs = load_policy(settings.config).decide.knowledge.dirs
    if not dirs:
        raise CliError(f"{NO_DIRS}; {settings.config} lists none", code=2)
    return list(dirs)
