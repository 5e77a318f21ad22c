"""``heal incidents list`` and ``heal incidents show``: read straight from the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from heal.cli import render
from heal.cli.approvals import Token, TokenFile, Url, token_of
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
from heal.cli.console import CliError, examples, fail, group, out, print_json
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
    """One incident: its fields, alerts, decisions, actions and timeline."""
    settings = make_settings(database_url=database_url)
    incident = run(_show(settings, incident_id), settings.database_url)
    if as_json:
        print_json(incident)
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
                ("outcome", incident["outcome"] or "-"),
                ("effectiveness", _score(incident)),
            ]
        )
    )
    console.print()
    console.print(_alerts(incident["alerts"]))
    if incident["decisions"]:
        console.print()
        console.print(_decisions(incident["decisions"]))
    console.print()
    console.print(_actions(incident["actions"]))
    console.print()
    console.print(render.timeline(incident["timeline"]))


def _score(incident: dict[str, Any]) -> str:
    score = incident["effectiveness"]
    if score is None:
        return "-"
    rating = incident["rating"]
    if rating is None:
        return f"{score}/5 (from the outcome)"
    say = f": {rating['comment']}" if rating["comment"] else ""
    return f"{score}/5 (rated by {rating['rated_by']}{say})"


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


def _decisions(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Decisions ({len(rows)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("rule")
    table.add_column("state")
    table.add_column("tier")
    table.add_column("proposal", overflow="fold")
    table.add_column("action", justify="right")
    table.add_column("tiers tried", overflow="fold")
    for row in rows:
        proposal = row["proposal"] or {}
        params = ", ".join(f"{k}={v}" for k, v in (proposal.get("params") or {}).items())
        said = f"{proposal['action']}({params})" if proposal else (row["error"] or "-")
        tried = "; ".join(
            f"{a['tier']}: " + ("proposed" if "proposal" in a else a.get("rejected", ""))
            for a in row["attempts"]
        )
        table.add_row(
            str(row["id"]),
            row["rule"],
            render.status(row["state"]),
            render.plain(row["tier"]),
            render.plain(said),
            render.plain(row["action_id"]),
            render.plain(tried or None),
        )
    return table


def _actions(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Actions ({len(rows)})", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("action")
    table.add_column("status")
    table.add_column("failure_type")
    table.add_column("outcome")
    table.add_column("node")
    table.add_column("message", overflow="fold")
    for row in rows:
        failure = row["failure_type"]
        table.add_row(
            str(row["id"]),
            row["action_name"],
            render.status(row["status"]),
            Text(failure, style="red") if failure else Text("-", style="dim"),
            render.plain(row["outcome"]),
            render.plain(row["current_node"]),
            render.plain(row["message"]),
        )
    return table


async def _show(settings: Settings, incident_id: int) -> dict[str, Any]:
    """The incident with its summary, alerts, decisions, actions and timeline."""
    from heal.store import alerts_repo, decisions_repo, incidents_repo, timeline_repo
    from heal.verify.ratings import outcome_fields, outcomes_by_action, remediation

    async with open_database(settings) as database:
        await require_schema(database)
        async with database.read() as connection:
            incident = await incidents_repo.get(connection, incident_id)
            if incident is None:
                raise CliError(f"incident {incident_id} not found")
            alerts = await alerts_repo.for_incident(connection, incident_id)
            decisions = await decisions_repo.for_incident(connection, incident_id)
            actions = await incidents_repo.actions_of(connection, incident_id)
            timeline = await timeline_repo.for_incident(connection, incident_id)
            outcomes = await outcomes_by_action(connection, incident_id)
            summary = await remediation(connection, incident)
    return {
        **incident,
        **summary,
        "alerts": alerts,
        "decisions": decisions,
        "actions": [{**a, **outcome_fields(outcomes.get(a["id"]))} for a in actions],
        "timeline": timeline,
    }


@app.command(
    "rate",
    epilog=examples(
        "heal incidents rate 1 5 --token $ALICE_TOKEN",
        "heal incidents rate 1 2 --comment 'fixed only after a manual restart'",
    ),
)
def rate(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="the incident's id")],
    score: Annotated[
        int, typer.Argument(metavar="SCORE", min=1, max=5, help="1 (did not help) to 5 (fixed it)")
    ],
    comment: Annotated[
        str, typer.Option("--comment", help="why, for the timeline", show_default=False)
    ] = "",
    url: Url = API_URL,
    token: Token = None,
    token_file: TokenFile = None,
    as_json: JsonOutput = False,
) -> None:
    """Rate the incident's remediation 1-5, through the API with your own token; your
    earlier rating is replaced, and the latest rating is its effectiveness score."""
    answer = _rate_through_api(incident_id, score, comment, url, token_of(token, token_file))
    if as_json:
        print_json(answer)
        return
    out().print(
        f"incident {incident_id} rated {score}/5; effectiveness {answer['effectiveness']}/5"
    )


def _rate_through_api(
    incident_id: int, score: int, comment: str, url: str, token: str
) -> dict[str, Any]:
    import httpx

    endpoint = f"{url.rstrip('/')}/api/v1/incidents/{incident_id}/rating"
    try:
        response = httpx.post(
            endpoint,
            json={"score": score, "comment": comment},
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach heal at {url}: {exc}", hint="Is `heal serve` running?")
    if response.status_code == 200:
        answer: dict[str, Any] = response.json()
        return answer
    detail = api_error_detail(response)
    if response.status_code == 401:
        fail(f"heal refused the token: {detail}")
    if response.status_code == 403:
        fail(f"refused: {detail}", code=3)
    fail(
        detail if response.status_code == 404 else f"heal answered {response.status_code}: {detail}"
    )
