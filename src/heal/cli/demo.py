"""``heal demo``: heal with a fake ITSM and a ready-made policy, on SQLite by default."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from heal.cli.common import API_URL, DatabaseUrl, make_settings, run, safe_url
from heal.cli.console import examples, fail, out

if TYPE_CHECKING:
    from heal.demo.runner import DemoInfo

DEMO_EXAMPLES = examples(
    "heal demo", "heal demo --port 9080 --itsm-port 9081 --database-url sqlite+aiosqlite:///demo.db"
)


def demo(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="heal's port (0: any free port)")
    ] = 8080,
    itsm_port: Annotated[
        int,
        typer.Option("--itsm-port", min=0, max=65535, help="the fake ITSM's port (0: any free)"),
    ] = 8081,
    database_url: DatabaseUrl = None,
) -> None:
    """Run heal and a fake ITSM together, with the bundled demo policy (Ctrl+C stops).

    The fake ITSM runs in the same process: it finishes (and approves) a ticket after
    three polls. The API token is `demo-token` (scopes ingest and read) unless
    HEAL_API_TOKENS is set; the user `demo` signs approvals with `demo-approver-token`.
    """
    # Imported here so that `heal --help` and the other commands do not load the server.
    from heal.demo.runner import PortUnavailable, run_demo
    from heal.observability import logging as heal_logging

    settings = make_settings(database_url=database_url)
    heal_logging.configure(settings.log_level, settings.log_json)
    try:
        run(
            run_demo(
                settings, port=port, itsm_port=itsm_port, on_ready=welcome_printer(database_url)
            ),
            settings.database_url,
        )
    except PortUnavailable as exc:
        fail(f"{exc}: stop what listens there, or choose another port")
    except ValueError as exc:
        fail(f"invalid settings: {exc}", code=2)
    out().print("demo stopped")


def welcome_printer(database_url: str | None) -> Callable[[DemoInfo], None]:
    """Prints the welcome panel; the commands repeat --database-url if one was given."""
    from heal.demo.runner import DEMO_APPROVER, DEMO_APPROVER_TOKEN, FINISH_AFTER_POLLS

    database = f" --database-url {database_url}" if database_url else ""

    def welcome(info: DemoInfo) -> None:
        api = escape(info.api_url)
        token = info.token or "$HEAL_TOKEN"
        token_line = (
            f"API token:  [bold]{token}[/bold] (HEAL_API_TOKENS is not set)"
            if info.token
            else "API token:  one of those configured in HEAL_API_TOKENS"
        )
        url_option = "" if info.api_url == API_URL else f" --url {info.api_url}"
        commands = [
            f"heal alerts send{url_option} --token {token} --name CheckoutDown "
            "--label service=checkout",
            f"heal incidents list{database}",
            f"heal incidents show 1{database}",
            f"heal alerts send{url_option} --token {token} --name DiskFull --label instance=db-1",
            f"heal approvals list{database}",
            f"heal approvals approve 1{url_option} --token {DEMO_APPROVER_TOKEN} "
            "--comment 'go ahead'",
        ]
        lines = [
            f"API:        [bold]{api}[/bold]   (docs: {api}/docs)",
            token_line,
            f"Approver:   [bold]{DEMO_APPROVER}[/bold], token [bold]{DEMO_APPROVER_TOKEN}[/bold] "
            "(signs approvals; service tokens never do)",
            f"Fake ITSM:  {escape(info.itsm_url)}   (approves a ticket after "
            f"{FINISH_AFTER_POLLS} polls, 2 s apart)",
            f"Database:   {escape(safe_url(info.database_url))}",
            "Ctrl+C stops the demo.",
        ]
        console = out()
        console.print(Panel("\n".join(lines), title="heal demo", title_align="left", expand=False))
        console.print("Try, in another terminal (after `source .venv/bin/activate`):")
        for command in commands:
            console.print(f"  [cyan]{escape(command)}[/cyan]", soft_wrap=True)

    return welcome
