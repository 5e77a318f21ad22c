"""``heal approvals …`` and ``heal silences …``: decide from the terminal."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from heal.cli import render
from heal.cli.common import (
    API_TIMEOUT_SECONDS,
    API_URL,
    DatabaseUrl,
    JsonOutput,
    api_error_detail,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, examples, fail, group, out, print_json, warn
from heal.cli.users import existing_user
from heal.domain.approvals import BREAK_GLASS, ApprovalStatus, SignRefused, person
from heal.domain.matchers import LabelMatcher

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
    from heal.store import approvals_repo

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
    from heal.store import approvals_repo

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


SIGN_HINT = (
    "A signature proves who signed: pass your own token with --token, HEAL_TOKEN or "
    "--token-file (an admin makes one with `heal users token new NAME`)."
)

Url = Annotated[str, typer.Option("--url", envvar="HEAL_URL", help="Where heal listens.")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HEAL_TOKEN",
        help="Your own API token (`heal users token new NAME`).",
        show_default=False,
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="HEAL_TOKEN_FILE",
        help="A file holding your token (first line).",
        show_default=False,
        dir_okay=False,
    ),
]
BreakGlass = Annotated[
    bool,
    typer.Option(
        "--break-glass",
        help="Sign directly in the database as --as NAME, when the API is down. Recorded "
        "as break-glass; all break-glass signatures together count as one.",
    ),
]
AsUser = Annotated[
    str | None,
    typer.Option("--as", help="The user signing, with --break-glass only.", show_default=False),
]


def token_of(token: str | None, token_file: Path | None) -> str:
    """The caller's own token, from --token (HEAL_TOKEN) or --token-file."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file"
            ) from None
        token = lines[0].strip() if lines else ""
    if not token:
        fail("no token: whose signature would this be?", code=2, hint=SIGN_HINT)
    return token


def _decide(
    approval_id: int,
    approve: bool,
    comment: str,
    *,
    url: str,
    token: str | None,
    token_file: Path | None,
    break_glass: bool,
    as_user: str | None,
    database_url: str | None,
) -> None:
    if break_glass:
        if not as_user:
            raise typer.BadParameter("--break-glass needs --as NAME", param_hint="--as")
        result = _decide_in_database(approval_id, as_user, approve, comment, database_url)
    elif as_user:
        raise typer.BadParameter(
            "signing as a name is only for --break-glass; " + SIGN_HINT, param_hint="--as"
        )
    else:
        result = _decide_through_api(
            approval_id, approve, comment, url, token_of(token, token_file)
        )
    out().print(
        f"approval {approval_id}: {result['status']} "
        f"({result['signatures']} of {result['required_signatures']} signatures); action "
        f"{result['action_status']}"
    )


def _decide_through_api(
    approval_id: int, approve: bool, comment: str, url: str, token: str
) -> dict[str, Any]:
    import httpx

    verb = "approve" if approve else "reject"
    endpoint = f"{url.rstrip('/')}/api/v1/approvals/{approval_id}/{verb}"
    try:
        response = httpx.post(
            endpoint,
            json={"comment": comment},
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        fail(
            f"cannot reach heal at {url}: {exc}",
            hint="Is `heal serve` running? If the API is down, `--break-glass --as NAME` "
            "signs directly in the database.",
        )
    if response.status_code == 200:
        answer: dict[str, Any] = response.json()
        return answer
    detail = api_error_detail(response)
    if response.status_code == 401:
        fail(f"heal refused the token: {detail}", hint=SIGN_HINT)
    if response.status_code == 403:
        fail(f"refused: {detail}", code=3)
    fail(
        detail
        if response.status_code in (404, 409)
        else f"heal answered {response.status_code}: {detail}"
    )


def _decide_in_database(
    approval_id: int, as_user: str, approve: bool, comment: str, database_url: str | None
) -> dict[str, Any]:
    from heal.app import Heal
    from heal.approvals.service import ApprovalClosed, ApprovalNotFound
    from heal.policy.models import Policy

    settings = make_settings(database_url=database_url)
    warn(
        f"break-glass: signing as {as_user} directly in the database; the timeline says "
        "break-glass, and break-glass signatures together count as one"
    )

    async def work() -> Any:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                user = await existing_user(connection, as_user)
        if user["disabled"]:
            raise CliError(f"refused: user {as_user} is disabled", code=3)
        heal = Heal.build(settings, Policy())
        try:
            return await heal.approvals.sign(
                approval_id, person(user), approve=approve, comment=comment, channel=BREAK_GLASS
            )
        except ApprovalNotFound:
            raise CliError(f"approval {approval_id} not found") from None
        except ApprovalClosed as exc:
            raise CliError(str(exc)) from None
        except SignRefused as exc:
            raise CliError(f"refused: {exc.reason}", code=3) from None
        finally:
            await heal.plugins.aclose()
            await heal.db.dispose()

    result = run(work(), settings.database_url)
    return {
        "status": result.approval_status.value,
        "action_status": result.action_status.value,
        "signatures": result.signatures,
        "required_signatures": result.required,
    }


@app.command(
    "approve",
    epilog=examples(
        "heal approvals approve 1 --token $ALICE_TOKEN --comment 'go ahead'",
        "HEAL_TOKEN_FILE=~/.heal-token heal approvals approve 1",
        "heal approvals approve 1 --break-glass --as alice --comment 'API down'",
    ),
)
def approve(
    approval_id: int,
    comment: str = typer.Option("", help="Written to the timeline."),
    url: Url = API_URL,
    token: Token = None,
    token_file: TokenFile = None,
    break_glass: BreakGlass = False,
    as_user: AsUser = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Sign in favour, through the API with your token; the action runs at the quorum."""
    _decide(
        approval_id,
        True,
        comment,
        url=url,
        token=token,
        token_file=token_file,
        break_glass=break_glass,
        as_user=as_user,
        database_url=database_url,
    )


@app.command(
    "reject",
    epilog=examples("heal approvals reject 1 --token $ALICE_TOKEN --comment 'not during the sale'"),
)
def reject(
    approval_id: int,
    comment: str = typer.Option("", help="The reason, written to the timeline."),
    url: Url = API_URL,
    token: Token = None,
    token_file: TokenFile = None,
    break_glass: BreakGlass = False,
    as_user: AsUser = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Reject, through the API with your token: the action is skipped with the comment."""
    _decide(
        approval_id,
        False,
        comment,
        url=url,
        token=token,
        token_file=token_file,
        break_glass=break_glass,
        as_user=as_user,
        database_url=database_url,
    )


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
    from heal.engine.engine import utcnow
    from heal.store import silences_repo

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
    from heal.engine.engine import utcnow
    from heal.store import silences_repo

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
    from heal.engine.engine import utcnow
    from heal.store import silences_repo

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
