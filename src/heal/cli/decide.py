"""``heal decide eval``: a policy's deciding against YAML cases (alerts in, the expected
action out), with its pass rate and each tier's latency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from heal.cli.common import JsonOutput, make_settings, open_database, require_schema, run
from heal.cli.console import CliError, ProgressBar, examples, group, out, print_json
from heal.cli.replay import PROGRESS_FROM, ConfigFile, NoLlm, PolicyFile, chosen_policy

if TYPE_CHECKING:
    from heal.decide.evaluation import EvalReport
    from heal.settings import Settings

app = group("Decisions: evaluate a policy's deciding against cases.")

EvalDatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        envvar="HEAL_DATABASE_URL",
        show_envvar=True,
        help="heal's database, whose playbooks and knowledge base the tiers consult "
        "[default: an empty throwaway one: the cases test the policy alone]",
        show_default=False,
    ),
]


@app.command(
    "eval",
    epilog=examples(
        "heal decide eval examples/decide-cases/ --policy examples/decide-cases/policy.yaml",
        "heal decide eval cases/ -c heal.yaml --no-llm",
        "heal decide eval cases/crash.yaml --policy new.yaml --json | jq '.pass_rate'",
    ),
)
def eval_(
    cases: Annotated[
        Path,
        typer.Argument(
            metavar="CASES", help="a YAML file of cases, or a directory of them (recursively)"
        ),
    ],
    policy_file: PolicyFile = None,
    config: ConfigFile = None,
    no_llm: NoLlm = False,
    min_pass_rate: Annotated[
        float,
        typer.Option(
            "--min-pass-rate",
            min=0.0,
            max=1.0,
            help="exit 1 when fewer cases pass (0-1)",
        ),
    ] = 1.0,
    database_url: EvalDatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Decide each case as heal would (the policy's tiers, its budget, the expert rules
    last) and compare with what it expects: pass rate, p50/p95 latency per tier, and
    each failing case with what was proposed instead. Exits 1 below --min-pass-rate."""
    settings = make_settings(
        database_url=database_url, config=str(config) if config is not None else None
    )
    report = run(
        _eval(
            settings,
            cases,
            policy_file,
            own_database=database_url is not None,
            ask_llm=not no_llm,
            quiet=as_json,
        ),
        database_url,
    )
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)
    if report.pass_rate < min_pass_rate:
        raise typer.Exit(1)


async def _eval(
    settings: Settings,
    cases: Path,
    policy_file: Path | None,
    *,
    own_database: bool,
    ask_llm: bool,
    quiet: bool,
) -> EvalReport:
    import tempfile

    from heal.decide import evaluation
    from heal.decide.assembly import TierSet
    from heal.decide.replay import without_llm
    from heal.observability import logging as heal_logging
    from heal.policy.loader import resolve_secrets
    from heal.store import migrate

    # A line per tier answer would bury the report: warnings only, on stderr.
    heal_logging.configure("WARNING")
    try:
        loaded = evaluation.load_cases(evaluation.case_files(cases))
    except evaluation.CasesError as exc:
        raise CliError(str(exc), code=2) from None
    policy, _source = chosen_policy(policy_file, settings)
    if not ask_llm:
        policy = without_llm(policy)
    secrets = resolve_secrets(policy) if policy.decide.llm is not None else {}
    with tempfile.TemporaryDirectory(prefix="heal-eval-") as scratch:
        if not own_database:
            settings = settings.model_copy(
                update={"database_url": f"sqlite+aiosqlite:///{scratch}/heal.db"}
            )
        async with open_database(settings, create=not own_database) as database:
            if own_database:
                await require_schema(database)
            else:
                await migrate.upgrade(database)
            tiers = TierSet(database, secrets)
            bar = ProgressBar("deciding cases", enabled=not quiet, from_count=PROGRESS_FROM)
            try:
                return await evaluation.evaluate(policy, tiers(policy), loaded, progress=bar.update)
            finally:
                bar.stop()
                await tiers.aclose()


def _print(report: EvalReport) -> None:
    console = out()
    style = "green" if not report.failed else "red"
    console.print(
        Text(
            f"{report.passed}/{len(report.results)} cases passed ({report.pass_rate:.0%}); "
            f"decision p50 {_ms(report.p50_ms)}, p95 {_ms(report.p95_ms)}",
            style=style,
        ),
        soft_wrap=True,
    )
    tiers = Table(title="Tiers", title_justify="left")
    for name in ("tier", "tried", "won", "p50", "p95", "decisions won p50", "p95"):
        tiers.add_column(name, justify="left" if name == "tier" else "right")
    for stats in report.tiers:
        tiers.add_row(
            stats.tier,
            str(stats.tried),
            str(stats.won),
            _ms(stats.p50_ms),
            _ms(stats.p95_ms),
            _ms(stats.decision_p50_ms),
            _ms(stats.decision_p95_ms),
        )
    console.print(tiers)
    if not report.failed:
        return
    failed = Table(title=f"Failing cases ({len(report.failed)})", title_justify="left")
    for name in ("case", "where", "proposed instead", "why"):
        failed.add_column(name, overflow="fold")
    for result in report.failed:
        proposal = result.proposal
        proposed = (
            f"{proposal.tier.value}: {proposal.action} "
            + "{"
            + ", ".join(f"{k}: {v}" for k, v in proposal.params.items())
            + "}"
            if proposal
            else "nothing"
        )
        failed.add_row(
            Text(result.name), Text(result.source), Text(proposed), Text(result.problem or "")
        )
    console.print(failed)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
