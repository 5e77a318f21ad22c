"""``heal replay``: stored alerts run again through a policy (the one heal runs with, or a
new one), nothing executed and nothing written; per incident, what would have happened
beside what did."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, ProgressBar, examples, fail, out, print_json, warn

if TYPE_CHECKING:
    from heal.decide.replay import IncidentReplay, ReplayReport
    from heal.policy.models import Policy
    from heal.settings import Settings

REPLAY_EXAMPLES = examples(
    "heal replay --since 7d -c heal.yaml",
    "heal replay --since 7d --policy new.yaml --changed",
    "heal replay --since 2026-03-01 --until 2026-03-08 --no-llm --json | jq '.changed'",
)
PROGRESS_FROM = 50  # notifications: fewer replay before a bar would be worth drawing
_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="HEAL_CONFIG",
        show_envvar=True,
        help="the policy YAML heal runs with (used unless --policy is given)",
        show_default=False,
    ),
]
PolicyFile = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        metavar="FILE",
        help="another policy YAML to try instead of heal's (nothing is reloaded)",
        show_default=False,
    ),
]
NoLlm = Annotated[
    bool,
    typer.Option(
        "--no-llm",
        help="do not ask the policy's LLM (decide with the other tiers only)",
    ),
]


def moment(value: str, now: datetime, option: str) -> datetime:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` before now, or an ISO date or time (UTC
    unless it says otherwise)."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(seconds=int(amount) * _UNITS[unit])
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(
            f"invalid {option} {value!r}: give a span before now (30m, 12h, 7d, 2w) or an "
            "ISO date or time (2026-03-01, 2026-03-01T06:00)",
            code=2,
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def chosen_policy(policy_file: Path | None, settings: Settings) -> tuple[Policy, str]:
    """``--policy``, else the policy heal runs with (``-c``/``HEAL_CONFIG``), and where it
    came from."""
    from heal.policy.loader import load_policy

    path = policy_file or (Path(settings.config) if settings.config else None)
    if path is None:
        raise CliError(
            "no policy: pass --policy FILE, or the one heal runs with (-c or HEAL_CONFIG)",
            code=2,
        )
    if not path.is_file():
        option = "--policy" if policy_file else "--config"
        raise CliError(f"no policy file at {path} ({option})", code=2)
    return load_policy(str(path)), str(path)


def replay(
    since: Annotated[
        str,
        typer.Option(
            "--since", metavar="WHEN", help="from: 30m, 12h, 7d, 2w ago, or an ISO date or time"
        ),
    ] = "7d",
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="WHEN",
            help="to (same forms as --since) [default: now]",
            show_default=False,
        ),
    ] = None,
    policy_file: PolicyFile = None,
    config: ConfigFile = None,
    no_llm: NoLlm = False,
    changed: Annotated[
        bool, typer.Option("--changed", help="show only incidents that would go differently")
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Run the alerts heal received in a window through a policy's rules, governors and
    decisions, executing nothing and writing nothing, and show per incident what would
    have happened beside what did. The policy's LLM is asked as heal would ask it (real
    calls), unless --no-llm."""
    settings = make_settings(
        database_url=database_url, config=str(config) if config is not None else None
    )
    now = datetime.now(UTC)
    try:
        start = moment(since, now, "--since")
        end = moment(until, now, "--until") if until else now
    except CliError as exc:
        fail(exc.message, code=exc.code)
    if start >= end:
        fail(f"--since ({start:%Y-%m-%d %H:%M}) is not before --until ({end:%Y-%m-%d %H:%M})", 2)
    report = run(
        _replay(settings, policy_file, start, end, ask_llm=not no_llm, quiet=as_json),
        settings.database_url,
    )
    shown = report.changed if changed else report.incidents
    if as_json:
        data = report.as_dict()
        data["replayed"] = [i.as_dict() for i in shown]
        print_json(data)
        return
    _print(report, shown)


async def _replay(
    settings: Settings,
    policy_file: Path | None,
    since: datetime,
    until: datetime,
    *,
    ask_llm: bool,
    quiet: bool,
) -> ReplayReport:
    from heal.decide import replay as replaying
    from heal.decide.assembly import TierSet
    from heal.observability import logging as heal_logging
    from heal.policy.loader import resolve_secrets

    # A line per tier answer would bury the report: warnings only, on stderr.
    heal_logging.configure("WARNING")
    policy, _source = chosen_policy(policy_file, settings)
    mode = replaying.llm_mode(policy, ask_llm)
    if not ask_llm:
        policy = replaying.without_llm(policy)
    secrets = resolve_secrets(policy) if policy.decide.llm is not None else {}
    async with open_database(settings) as database:
        await require_schema(database)
        tiers = TierSet(database, secrets)
        bar = ProgressBar("replaying alerts", enabled=not quiet, from_count=PROGRESS_FROM)
        try:
            return await replaying.replay(
                database, policy, tiers(policy), since, until, llm=mode, progress=bar.update
            )
        finally:
            bar.stop()
            await tiers.aclose()


def _print(report: ReplayReport, shown: list[IncidentReplay]) -> None:
    console = out()
    console.print(
        f"replayed {report.alerts} alerts from {report.since:%Y-%m-%d %H:%M} to "
        f"{report.until:%Y-%m-%d %H:%M} UTC: {len(report.incidents)} incidents, "
        f"{len(report.changed)} would go differently",
        soft_wrap=True,
    )
    if report.llm == "skipped":
        warn("the policy's LLM was not asked (--no-llm): its decisions may differ")
    if shown:
        table = Table(title_justify="left", show_lines=True)
        table.add_column("#", justify="right")
        table.add_column("opened (UTC)", no_wrap=True)
        table.add_column("incident", overflow="fold")
        table.add_column("would", overflow="fold")
        table.add_column("did", overflow="fold")
        table.add_column("differs", overflow="fold")
        for incident in shown:
            table.add_row(
                str(incident.number),
                f"{incident.opened_at:%Y-%m-%d %H:%M}",
                Text(incident.title + _rules(incident)),
                _would(incident),
                _did(incident),
                Text(
                    "\n".join(incident.differences) or "no",
                    style="yellow" if incident.changed else "green",
                ),
            )
        console.print(table)
    totals = report.totals()
    if totals:
        console.print(
            "would create: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(totals.items())),
            soft_wrap=True,
        )
    console.print(
        Text("replay cannot know: " + "; ".join(report.unknowable), style="dim"), soft_wrap=True
    )


def _rules(incident: IncidentReplay) -> str:
    rules = ", ".join(incident.rules_matched) or "no rule matched"
    notes = "".join(f"\n{note}" for note in incident.notes)
    return f"\nrules: {rules}{notes}"


def _would(incident: IncidentReplay) -> Text:
    lines: list[str] = []
    for decision in incident.decisions:
        if decision.winner is None:
            lines.append(f"decision ({decision.rule}): error: {decision.error}")
            continue
        tried = ", ".join(
            f"{a.tier.value} {'✓' if a.proposal else '✗ ' + str(a.rejected)}"
            for a in decision.attempts
        )
        lines.append(
            f"decision ({decision.rule}): {decision.tier} → {decision.action} "
            f"{_params(decision.winner.params)} [{tried}]"
        )
    for action in incident.actions:
        why = f": {action.reason}" if action.reason else ""
        lines.append(f"{action.action} ({action.signal}) {action.verdict}{why}")
    return Text("\n".join(lines) or "nothing")


def _did(incident: IncidentReplay) -> Text:
    if not incident.stored_ids:
        return Text("no incident")
    lines = ["incident " + ", ".join(f"#{i}" for i in incident.stored_ids)]
    for decision in incident.did_decisions:
        lines.append(
            f"decision #{decision.id} ({decision.rule}): {decision.tier or decision.state}"
            + (f" → {decision.action}" if decision.action else "")
            + (f": {decision.error}" if decision.error else "")
        )
    for action in incident.did_actions:
        outcome = f", {action.outcome}" if action.outcome else ""
        lines.append(f"{action.action} #{action.id}: {action.status}{outcome} ({action.verdict})")
    return Text("\n".join(lines))


def _params(params: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"
