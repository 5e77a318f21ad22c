"""``heal policy check``, ``heal policy schema`` and ``heal policy types``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from heal.cli.common import policy_problems
from heal.cli.console import examples, fail, group, out, print_json, warn
from heal.policy.loader import PolicyError, load_policy
from heal.policy.schema import policy_json_schema

app = group("Check a policy file, print its JSON Schema, or list the action types.")


@app.command("check", epilog=examples("heal policy check heal.yaml"))
def check(
    file: Annotated[Path, typer.Argument(help="the policy YAML", show_default=False)],
) -> None:
    """Validate a policy: every problem as file:line:col (path): message. Exit 2 if any."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        fail(policy_problems(exc), code=2)
    for name, ref in sorted(policy.secrets.items()):
        if ref.env not in os.environ:
            warn(
                f"note: secret {name!r} reads the environment variable {ref.env}, which is "
                "not set here (heal serve refuses to start without it)"
            )
    rules, actions = len(policy.rules), len(policy.actions)
    out().print(f"[green]OK: {rules} rules, {actions} actions[/green]")


@app.command("schema", epilog=examples("heal policy schema > heal.schema.json"))
def schema() -> None:
    """Print the policy's JSON Schema (for editor completion) to stdout."""
    typer.echo(policy_json_schema())


@app.command(
    "types", epilog=examples("heal policy types", "heal policy types --json | jq '.[].name'")
)
def types(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, for scripts")] = False,
) -> None:
    """List the action types heal can run (built in, or installed as plugins)."""
    from rich.table import Table

    from heal.policy.plugins import broken, installed

    listed = [
        {"name": spec.name, "summary": spec.summary, "config": spec.config.__name__}
        for spec in installed().values()
    ]
    failed = [{"name": b.name, "error": b.reason} for b in broken()]
    if as_json:
        print_json({"types": listed, "failed_to_load": failed})
        return
    table = Table("type", "does", title="Action types", title_justify="left")
    for item in listed:
        table.add_row(item["name"], item["summary"])
    out().print(table)
    for item in failed:
        warn(f"plugin {item['name']!r} failed to load: {item['error']}")
