"""``heal policy check`` and ``heal policy schema``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from heal.cli.common import policy_problems
from heal.cli.console import examples, fail, group, out, warn
from heal.policy.loader import PolicyError, load_policy
from heal.policy.schema import policy_json_schema

app = group("Check a policy file, or print its JSON Schema.")


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
