"""``heal notifications list``: the delivery records, read straight from the database."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

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
from heal.cli.console import examples, group, out, print_json

if TYPE_CHECKING:
    from heal.settings import Settings

app = group("Notifications: what heal told whom, and how it went.")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    COLLAPSED = "collapsed"


@app.command(
    "list",
    epilog=examples(
        "heal notifications list --status failed",
        "heal notifications list --incident 7 --channel ops-webhook",
        "heal notifications list --json | jq '.[] | select(.status == \"failed\") | .error'",
    ),
)
def list_(
    status: Annotated[
        DeliveryStatus | None, typer.Option("--status", help="only records with this status")
    ] = None,
    incident: Annotated[
        int | None, typer.Option("--incident", min=1, help="only this incident's")
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="only this routed channel's")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="newest N")] = 20,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The newest delivery records: one per routed message and channel, and chat cards."""
    settings = make_settings(database_url=database_url)
    rows = run(
        _list(settings, status.value if status else None, incident, channel, limit),
        settings.database_url,
    )
    if as_json:
        print_json(rows)
        return
    console = out()
    if not rows:
        console.print("no notifications")
        return
    table = Table(title=f"Notifications (newest {len(rows)})", title_justify="left")
    for name, justify in (("id", "right"), ("incident", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("event", "channel", "status", "tries", "created (UTC)", "error"):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["incident_id"]),
            render.plain(row["event"] or row["kind"]),
            render.plain(row["channel"] or "-"),
            render.status(row["status"]),
            str(row["attempts"]),
            render.when(row["created_at"]),
            render.plain(row["error"] or ""),
        )
    console.print(table)


async def _list(
    settings: Settings, status: str | None, incident: int | None, channel: str | None, limit: int
) -> list[dict[str, Any]]:
    from heal.approvals.notices import delivery_record
    from heal.store import notifications_repo

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            rows = await notifications_repo.listing(
                connection, status=status, incident_id=incident, channel=channel, limit=limit
            )
    return [delivery_record(row) for row in rows]
