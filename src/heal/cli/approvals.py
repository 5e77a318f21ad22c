"""``heal approvals …`` and ``heal silences …``: decide from the terminal."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

import typer
from rich.table import Table

from heal.app import Heal
from heal.approvals.service import ApprovalClosed, ApprovalNotFound
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
from heal.cli.users import existing_user
from heal.domain.approvals import ApprovalStatus, Role, Signer, SignRefused
from heal.domain.matchers import LabelMatcher
from heal.engine.engine import utcnow
from heal.policy.models import Policy
from heal.store import approvals_repo, silences_repo

app = group("Pending approvals: list, show, approve, reject.")
silences = group("Silences: suppress actions and cards for matching alerts.")


class StatusFilter(StrEnum):
    """--status: an approval status, or all (tests check it lists every ApprovalStatus)."""

    PENDING = ApprovalStatus.PENDING.value
    APPROVED = ApprovalStatus.APPROVED.value
    REJECTED = ApprovalStatus.REJECTED.value
    EXPIRED = ApprovalStatus.EXPIRED.value
    OBSOLETE = ApprovalStatus.OBSOLETE.value
    ALL = "all"


@app.command(
    "list",
    epilog=examples("heal approvals list", "heal approvals list --status all --json"),
)
def list_approvals(
    status: StatusFilter = typer.Option(
        StatusFilter.PENDING, case_sensitive=False, help="Only approvals in this status."
    ),
    limit: int = typer.Option(50, min=1, max=500),
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Approvals, newest first."""
    settings = make_settings(database_url=database_url)

    async def work() -> list[dict[str, Any]]:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                return await approvals_repo.page(
                    connection, None if status == "all" else status, limit
                )

    rows = run(work(), settings.database_url)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "status", "action", "incident", "risk", "quorum", "expires (UTC)")
    for row in rows:
        table.add_row(
            str(row["id"]),
            render.status(row["status"]),
            str(row["action_id"]),
            str(row["incident_id"]),
            row["risk"],
            str(row["required_signatures"]),
            render.when(row["expires_at"]),
        )
    out().print(table if rows else f"no {status} approvals")


@app.command("show", epilog=examples("heal approvals show 1", "heal approvals show 1 --json"))
def show(approval_id: int, database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """One approval with its signatures."""
    settings = make_settings(database_url=database_url)

    async def work() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                row = await approvals_repo.get(connection, approval_id)
                if row is None:
                    raise CliError(f"approval {approval_id} not found")
                return row, await approvals_repo.signatures(connection, approval_id)

    row, signatures = run(work(), settings.database_url)
    if as_json:
        print_json({**row, "signatures": signatures})
        return
    out().print(
        render.fields(
            [
                (k, row[k])
                for k in (
                    "id",
                    "status",
                    "action_id",
                    "incident_id",
                    "risk",
                    "required_signatures",
                    "approver_groups",
                    "requested_by",
                    "requested_at",
                    "expires_at",
                    "decided_by",
                    "decided_at",
                    "reason",
                )
            ]
        )
    )
    table = Table("signer", "decision", "channel", "at", "comment", title="signatures")
    for s in signatures:
        table.add_row(
            s["signer"], s["decision"], s["channel"], render.when(s["at"]), s["comment"] or ""
        )
    out().print(table)


def _decide(
    approval_id: int, as_user: str, approve: bool, comment: str, database_url: str | None
) -> None:
    settings = make_settings(database_url=database_url)

    async def work() -> Any:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                user = await existing_user(connection, as_user)
        signer = Signer(user["name"], Role.parse(user["role"]), frozenset(user["groups"]))
        heal = Heal.build(settings, Policy())
        try:
            return await heal.approvals.sign(
                approval_id, signer, approve=approve, comment=comment, channel="cli"
            )
        except ApprovalNotFound:
            raise CliError(f"approval {approval_id} not found") from None
        except ApprovalClosed as exc:
            raise CliError(str(exc)) from None
        except SignRefused as exc:
            raise CliError(f"refused: {exc.reason}", code=3) from None
        finally:
            await heal.http.aclose()
            await heal.db.dispose()

    result = run(work(), settings.database_url)
    out().print(
        f"approval {approval_id}: {result.approval_status.value} "
        f"({result.signatures} of {result.required} signatures); action "
        f"{result.action_status.value}"
    )


@app.command("approve", epilog=examples("heal approvals approve 1 --as alice --comment 'go ahead'"))
def approve(
    approval_id: int,
    as_user: str = typer.Option(..., "--as", help="The heal user signing."),
    comment: str = typer.Option("", help="Written to the timeline."),
    database_url: DatabaseUrl = None,
) -> None:
    """Sign in favour; the action runs once the quorum is reached."""
    _decide(approval_id, as_user, True, comment, database_url)


@app.command(
    "reject", epilog=examples("heal approvals reject 1 --as alice --comment 'not during the sale'")
)
def reject(
    approval_id: int,
    as_user: str = typer.Option(..., "--as", help="The heal user rejecting."),
    comment: str = typer.Option("", help="The reason, written to the timeline."),
    database_url: DatabaseUrl = None,
) -> None:
    """Reject: the action is skipped with the comment as its reason."""
    _decide(approval_id, as_user, False, comment, database_url)


@silences.command(
    "add",
    epilog=examples(
        "heal silences add service=checkout --duration 2h --comment 'deploy'",
        "heal silences add alertname=~Disk.* instance!=db-1 --duration 30m --comment 'disks'",
    ),
)
def add_silence(
    matcher: list[str] = typer.Argument(..., help="label=value, label=~regex, label!=value …"),
    duration: str = typer.Option("2h", help="How long: 30m, 2h, 1d."),
    comment: str = typer.Option(..., help="Why (shown on every shielded action)."),
    by: str = typer.Option("cli", help="Who is silencing."),
    database_url: DatabaseUrl = None,
) -> None:
    """Silence alerts: matching alerts start no actions (status shield) and send no cards."""
    matchers: dict[str, str] = {}
    for item in matcher:
        for op in ("=~", "!~", "!=", "="):
            name, sep, value = item.partition(op)
            if sep and name:
                spec = value if op == "=" else op + value
                try:
                    LabelMatcher.parse(name, spec)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc)) from None
                matchers[name] = spec
                break
        else:
            raise typer.BadParameter(f"{item!r} is not label=value, label=~regex, …")
    seconds = _seconds(duration)
    settings = make_settings(database_url=database_url)

    async def work() -> int:
        async with open_database(settings) as db:
            await require_schema(db)
            now = utcnow()
            async with db.write() as connection:
                return await silences_repo.add(
                    connection,
                    {
                        "matchers": matchers,
                        "starts_at": now,
                        "ends_at": now + timedelta(seconds=seconds),
                        "created_by": by,
                        "comment": comment,
                        "created_at": now,
                    },
                )

    silence_id = run(work(), settings.database_url)
    out().print(f"silence #{silence_id} active for {duration}")


@silences.command(
    "list", epilog=examples("heal silences list", "heal silences list --expired --json")
)
def list_silences(
    expired: bool = typer.Option(False, help="Include ended silences."),
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Active silences (and ended ones with --expired)."""
    settings = make_settings(database_url=database_url)

    async def work() -> list[dict[str, Any]]:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                return await silences_repo.all_silences(connection, expired, utcnow())

    rows = run(work(), settings.database_url)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "matchers", "ends", "by", "comment")
    for row in rows:
        table.add_row(
            str(row["id"]),
            render.matchers(row["matchers"]),
            render.when(row["ends_at"]),
            row["created_by"],
            row["comment"],
        )
    out().print(table if rows else "no silences")


@silences.command("expire", epilog=examples("heal silences expire 4"))
def expire_silence(silence_id: int, database_url: DatabaseUrl = None) -> None:
    """End a silence now."""
    settings = make_settings(database_url=database_url)

    async def work() -> bool:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                return await silences_repo.expire(connection, silence_id, utcnow())

    if not run(work(), settings.database_url):
        fail(f"no active silence #{silence_id}")
    out().print(f"silence #{silence_id} ended")


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = int(duration[:-1]) * units[duration[-1]]
    except (KeyError, ValueError, IndexError):
        raise typer.BadParameter("a duration like 30m, 2h or 1d", param_hint="--duration") from None
    if value <= 0:
        raise typer.BadParameter("must be positive", param_hint="--duration")
    return value
