"""``heal incidents list`` and ``heal incidents show``: read straight from the database."""

from __future__ import annotations

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
from heal.cli.console import CliError, examples, group, out, print_json
from heal.domain.incidents import IncidentStatus

if TYPE_CHECKING:
    from heal.settings import Settings

app = group("Incidents, read from heal's database.")


@app.command(
    "list",
    epilog=examples(
        "heal incidents list --status open",
        "heal incidents list --limit 5 --json | jq '.[].title'",
    ),
)
def list_(
    status: Annotated[
        IncidentStatus | None, typer.Option("--status", help="only open or only resolved")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="newest N")] = 20,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The newest incidents with their actions' statuses."""
    settings = make_settings(database_url=database_url)
    rows, counts = run(_list(settings, status, limit), settings.database_url)
    if as_json:
        print_json([{**row, "actions": counts.get(row["id"], {})} for row in rows])
        return
    console = out()
    if not rows:
        console.print("no incidents" + (f" with status {status.value}" if status else ""))
        return
    table = Table(title=f"Incidents (newest {len(rows)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("status")
    table.add_column("severity")
    table.add_column("title", overflow="fold")
    table.add_column("opened (UTC)", no_wrap=True)
    table.add_column("actions")
    for row in rows:
        table.add_row(
            str(row["id"]),
            render.status(row["status"]),
            render.plain(row["severity"]),
            render.plain(row["title"]),
            render.when(row["opened_at"]),
            render.counts(counts.get(row["id"], {})),
        )
    console.print(table)


async def _list(
    settings: Settings, status: IncidentStatus | None, limit: int
) -> tuple[list[dict[str, Any]], dict[int, dict[str, int]]]:
    from heal.store import incidents_repo

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            rows = await incidents_repo.page(
                connection, status=status.value if status else None, limit=limit
            )
            counts = await incidents_repo.action_counts(connection, [r["id"] for r in rows])
    return rows, counts


@app.command("show", epilog=examples("heal incidents show 1", "heal incidents show 1 --json"))
def show(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="the incident's id")],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """One incident: its fields, alerts, actions and timeline."""
    settings = make_settings(database_url=database_url)
    incident, alerts, actions, timeline = run(_show(settings, incident_id), settings.database_url)
    if as_json:
        print_json({**incident, "alerts": alerts, "actions": actions, "timeline": timeline})
        return
    console = out()
    console.print(f"[bold]Incident {incident_id}[/bold]: {render.markup(incident['title'])}")
    console.print(
        render.fields(
            [
                ("status", render.status(incident["status"])),
                ("severity", incident["severity"]),
                ("rule", incident["rule"]),
                ("group", render.labels(incident["group_labels"])),
                ("opened", render.when(incident["opened_at"]) + " UTC"),
                ("resolved", _resolved(incident)),
            ]
        )
    )
    console.print()
    console.print(_alerts(alerts))
    console.print()
    console.print(_actions(actions))
    console.print()
    console.print(render.timeline(timeline))


def _resolved(incident: dict[str, Any]) -> str:
    if incident["resolved_at"] is None:
        return "-"
    return f"{render.when(incident['resolved_at'])} UTC ({incident['resolution'] or 'resolved'})"


def _alerts(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Alerts ({len(rows)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("status")
    table.add_column("labels", overflow="fold")
    table.add_column("starts (UTC)", no_wrap=True)
    table.add_column("ends (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["id"]),
            render.status(row["status"]),
            render.labels(row["labels"]),
            render.when(row["starts_at"]),
            render.when(row["ends_at"]),
        )
    return table


def _actions(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Actions ({len(rows)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("action")
    table.add_column("status")
    table.add_column("failure_type")
    table.add_column("node")
    table.add_column("message", overflow="fold")
    for row in rows:
        failure = row["failure_type"]
        table.add_row(
            str(row["id"]),
            row["action_name"],
            render.status(row["status"]),
            Text(failure, style="red") if failure else Text("-", style="dim"),
            render.plain(row["current_node"]),
            render.plain(row["message"]),
        )
    return table


async def _show(
    settings: Settings, incident_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    from heal.store import alerts_repo, incidents_repo, timeline_repo

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            incident = await incidents_repo.get(connection, incident_id)
            if incident is None:
                raise CliError(f"incident {incident_id} not found")
            alerts = await alerts_repo.for_incident(connection, incident_id)
            actions = await incidents_repo.actions_of(connection, incident_id)
            timeline = await timeline_repo.for_incident(connection, incident_id)
    return incident, alerts, actions, timeline
