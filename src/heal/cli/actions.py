"""``heal actions show`` and ``heal actions cancel``."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from heal.cli import render
from heal.cli.common import (
    UPGRADE_HINT,
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
    safe_url,
    sqlite_file,
)
from heal.cli.console import CliError, examples, fail, group, out, print_json

if TYPE_CHECKING:
    from heal.engine.engine import CancelResult
    from heal.settings import Settings

app = group("Action instances: inspect or cancel.")

ActionId = Annotated[int, typer.Argument(metavar="ID", help="the action's id")]


@app.command("show", epilog=examples("heal actions show 3", "heal actions show 3 --json"))
def show(
    action_id: ActionId, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """One action: its fields, outputs and timeline."""
    settings = make_settings(database_url=database_url)
    row, timeline = run(_show(settings, action_id), settings.database_url)
    if as_json:
        print_json({**row, "timeline": timeline})
        return
    console = out()
    console.print(f"[bold]Action {action_id}[/bold]: {render.markup(row['action_name'])}")
    failure = row["failure_type"]
    console.print(
        render.fields(
            [
                ("status", render.status(row["status"])),
                ("failure_type", Text(failure, style="red") if failure else "-"),
                ("message", row["message"]),
                ("incident", row["incident_id"]),
                ("rule", row["rule"]),
                ("plugin", row["plugin"]),
                ("target", row.get("target")),
                ("signal", row["signal"]),
                ("node", row["current_node"]),
                # Counted from 1, as the timeline's "after 3 polls" (stored from 0).
                ("attempt / poll", f"{row['attempt'] + 1} / {row['poll'] + 1}"),
                ("created", _utc(row["created_at"])),
                ("started", _utc(row["started_at"])),
                ("finished", _utc(row["finished_at"])),
                ("next wake", _utc(row["next_wake_at"])),
                ("outputs", row["outputs"] or None),
                ("outcome", _outcome(row)),
            ]
        )
    )
    console.print()
    console.print(render.timeline(timeline))


def _outcome(row: dict[str, Any]) -> str:
    """The verification's verdict, or by when it is due."""
    watch = row["verification"]
    if watch is None:
        return "-"
    if row["outcome"] == "pending":
        if watch["quiet_until"] is None:
            return f"pending (its alerts must resolve by {_iso_utc(watch['within_at'])})"
        return f"pending (resolved; verified if quiet until {_iso_utc(watch['quiet_until'])})"
    return f"{row['outcome']} at {_iso_utc(watch['outcome_at'])}"


def _iso_utc(value: str | None) -> str:
    return _utc(datetime.fromisoformat(value) if value else None)


def _utc(value: Any) -> str:
    return "-" if value is None else f"{render.when(value)} UTC"


async def _show(settings: Settings, action_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from heal.store import actions_repo, timeline_repo
    from heal.store import verifications_repo as verify_repo
    from heal.verify.ratings import outcome_fields

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            row = await actions_repo.load(connection, action_id)
            if row is None:
                raise CliError(f"action {action_id} not found")
            timeline = await timeline_repo.for_action(connection, action_id)
            watch = await verify_repo.for_action(connection, action_id)
    return {**row, **outcome_fields(watch)}, timeline


@app.command("cancel", epilog=examples("heal actions cancel 3 --reason 'fixed by hand'"))
def cancel(
    action_id: ActionId,
    reason: Annotated[
        str, typer.Option("--reason", help="why, for the timeline", show_default=False)
    ] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Cancel an in-flight action: it ends as failure/user_abort (works while heal runs)."""
    settings = make_settings(database_url=database_url)
    who = f"cli:{_os_user()}"
    result = run(_cancel(settings, action_id, who, reason), settings.database_url)
    if not result.cancelled:
        fail(
            f"action {action_id} already finished with status {result.status.value}: "
            "nothing to cancel"
        )
    out().print(
        f"[green]action {action_id} cancelled[/green]: failure/user_abort (by {render.markup(who)})"
    )


async def _cancel(settings: Settings, action_id: int, who: str, reason: str) -> CancelResult:
    from heal.app import Heal
    from heal.engine.engine import ActionNotFound
    from heal.policy.models import Policy

    path = sqlite_file(settings.database_url)
    if path is not None and not path.exists():
        raise CliError(f"no heal database at {safe_url(settings.database_url)}.", hint=UPGRADE_HINT)
    # Only the engine's cancel is needed: no policy, no runtime started.
    heal = Heal.build(settings, Policy())
    try:
        await require_schema(heal.db)
        return await heal.engine.cancel(action_id, who=who, reason=reason)
    except ActionNotFound:
        raise CliError(f"action {action_id} not found") from None
    finally:
        await heal.stop()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
