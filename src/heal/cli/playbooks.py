"""``heal playbooks``: what heal learned fixes which symptoms, in heal's database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from heal.cli import render
from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, examples, fail, group, out, print_json
from heal.domain.playbooks import PlaybookStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

app = group("Playbooks: list, show, approve, deprecate, edit, delete, export, import.")
T = TypeVar("T")
IdArgument = Annotated[int, typer.Argument(metavar="ID", help="the playbook's id", min=1)]
StatusOption = Annotated[
    PlaybookStatus | None, typer.Option("--status", help="draft, approved or deprecated")
]


def _in_database(
    database_url: str | None, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
) -> T:
    settings = make_settings(database_url=database_url)

    async def go() -> T:
        from heal.decide.playbook_admin import PlaybookInvalid, PlaybookNotFound

        async with open_database(settings) as database:
            await require_schema(database)
            try:
                if write:
                    async with database.write() as connection:
                        return await work(connection)
                async with database.read() as connection:
                    return await work(connection)
            except (PlaybookNotFound, PlaybookInvalid) as exc:
                raise CliError(str(exc)) from None

    return run(go(), settings.database_url)


def _now() -> Any:
    from heal.engine.engine import utcnow

    return utcnow()


@app.command(
    "list",
    epilog=examples(
        "heal playbooks list",
        "heal playbooks list --status approved",
        "heal playbooks list --action restart-workload --json",
    ),
)
def list_(
    status: StatusOption = None,
    action: Annotated[str | None, typer.Option(help="only this action's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 100,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Playbooks by id, with their stats: runs, verified successes, rejections, the lower
    bound the playbook tier ranks by, MTTR."""
    from heal.decide import playbook_admin as admin

    async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
        return await admin.listing(
            connection,
            status=status,
            action=action,
            limit=limit,
        )

    rows = _in_database(database_url, work, write=False)
    if as_json:
        print_json(rows)
        return
    console = out()
    if not rows:
        console.print("no playbooks")
        return
    table = Table(title="Playbooks", title_justify="left")
    for name in ("id", "status", "name", "action", "runs", "fixed", "rejected", "bound", "MTTR"):
        table.add_column(name, justify="left" if name in ("status", "name", "action") else "right")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["status"],
            render.plain(row["name"]),
            render.plain(row["action"]),
            str(row["runs"]),
            str(row["verified_successes"]),
            str(row["rejections"]),
            f"{row['lower_bound']:.2f}",
            _seconds(row["mttr_seconds"]),
        )
    console.print(table)


@app.command("show", epilog=examples("heal playbooks show 3", "heal playbooks show 3 --json"))
def show(
    playbook_id: IdArgument, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """One playbook: its signature, annotation text, action, params and stats."""
    from heal.decide import playbook_admin as admin

    async def work(connection: AsyncConnection) -> dict[str, Any]:
        return await admin.show(connection, playbook_id)

    row = _in_database(database_url, work, write=False)
    if as_json:
        print_json(row)
        return
    _print_one(row)


def _print_one(row: dict[str, Any]) -> None:
    signature = row["signature"]
    out().print(
        render.fields(
            [
                ("id", row["id"]),
                ("name", row["name"]),
                ("status", row["status"]),
                ("alertname", signature.get("alertname")),
                ("severity", signature.get("severity") or "-"),
                ("labels", render.labels(signature.get("labels"))),
                ("text", row["annotation_text"] or "-"),
                ("action", row["action"]),
                ("params", render.labels(row["params"])),
                ("runs", row["runs"]),
                ("verified successes", row["verified_successes"]),
                ("rejections", row["rejections"]),
                ("lower bound", f"{row['lower_bound']:.3f}"),
                ("MTTR", _seconds(row["mttr_seconds"])),
                ("last used", row["last_used_at"] or "-"),
                (
                    "learned from",
                    f"incident {row['learned_from_incident']}"
                    if row["learned_from_incident"]
                    else "-",
                ),
                ("updated", row["updated_at"]),
            ]
        )
    )


def _set_status(playbook_id: int, status: PlaybookStatus, database_url: str | None) -> None:
    from heal.decide import playbook_admin as admin

    async def work(connection: AsyncConnection) -> dict[str, Any]:
        return await admin.set_status(connection, playbook_id, status, _now())

    _in_database(database_url, work, write=True)
    out().print(f"[green]playbook {playbook_id} {status.value}[/green]")


@app.command("approve", epilog=examples("heal playbooks approve 3"))
def approve(playbook_id: IdArgument, database_url: DatabaseUrl = None) -> None:
    """Let the playbook tier propose it (works while heal runs)."""
    _set_status(playbook_id, PlaybookStatus.APPROVED, database_url)


@app.command("deprecate", epilog=examples("heal playbooks deprecate 3"))
def deprecate(playbook_id: IdArgument, database_url: DatabaseUrl = None) -> None:
    """Never propose it again; it keeps its stats."""
    _set_status(playbook_id, PlaybookStatus.DEPRECATED, database_url)


def _param(value: str) -> tuple[str, Any]:
    import json

    name, sep, raw = value.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"NAME=VALUE expected, not {value!r}")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw  # a plain string
    return name, parsed


@app.command(
    "edit",
    epilog=examples(
        'heal playbooks edit 3 --name "restart checkout"',
        "heal playbooks edit 3 --param namespace=shop --param replicas=3",
        "heal playbooks edit 3 --status draft",
    ),
)
def edit(
    playbook_id: IdArgument,
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    text: Annotated[str | None, typer.Option(help="the annotation text compared")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="NAME=VALUE (JSON or a plain string); replaces all params"),
    ] = None,
    status: StatusOption = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Change a playbook's name, annotation text, params or status."""
    from pydantic import ValidationError

    from heal.decide import playbook_admin as admin

    changes: dict[str, Any] = {"name": name, "annotation_text": text, "status": status}
    if param:
        changes["params"] = dict(_param(p) for p in param)
    try:
        edit_ = admin.PlaybookEdit.model_validate(
            {k: v for k, v in changes.items() if v is not None}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
    if edit_ == admin.PlaybookEdit():
        fail("nothing to change: give --name, --text, --param or --status")

    async def work(connection: AsyncConnection) -> dict[str, Any]:
        return await admin.edit(connection, playbook_id, edit_, _now())

    row = _in_database(database_url, work, write=True)
    if as_json:
        print_json(row)
        return
    out().print(f"[green]playbook {playbook_id} edited[/green]")


@app.command("delete", epilog=examples("heal playbooks delete 3 --yes"))
def delete(
    playbook_id: IdArgument,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete a playbook; the incidents it learned from are not learned again."""
    from heal.decide import playbook_admin as admin

    if not yes and not typer.confirm(f"delete playbook {playbook_id}?"):
        raise typer.Exit(1)

    async def work(connection: AsyncConnection) -> None:
        await admin.delete(connection, playbook_id)

    _in_database(database_url, work, write=True)
    out().print(f"[green]playbook {playbook_id} deleted[/green]")


@app.command(
    "export",
    epilog=examples(
        "heal playbooks export > playbooks.yaml",
        "heal playbooks export --status approved --output approved.yaml",
    ),
)
def export(
    status: StatusOption = None,
    output: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Every playbook (of the status) as YAML, for ``heal playbooks import`` elsewhere."""
    from heal.decide import playbook_admin as admin

    async def work(connection: AsyncConnection) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = await admin.listing(
                connection,
                status=status,
                after_id=rows[-1]["id"] if rows else 0,
                limit=500,
            )
            rows += page
            if len(page) < 500:
                return rows

    text = admin.export_yaml(_in_database(database_url, work, write=False))
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    out().print(f"wrote {output}")


@app.command(
    "import",
    epilog=examples("heal playbooks import playbooks.yaml", "heal playbooks import - < p.yaml"),
)
def import_(
    path: Annotated[str, typer.Argument(metavar="FILE", help="an export; - for stdin")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create the playbooks missing; replace the fields of those with the same signature,
    action and params."""
    import sys

    from heal.decide import playbook_admin as admin

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    try:
        records = admin.parse_yaml(text)
    except admin.PlaybookInvalid as exc:
        fail(f"{path}: {exc}")

    async def work(connection: AsyncConnection) -> tuple[int, int]:
        return await admin.import_records(connection, records, _now())

    created, updated = _in_database(database_url, work, write=True)
    if as_json:
        print_json({"created": created, "updated": updated})
        return
    out().print(f"[green]{created} created, {updated} updated[/green]")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
