"""``heal alerts send``: post an Alertmanager webhook to a running heal, as Alertmanager would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table

from heal.cli.common import API_TIMEOUT_SECONDS, API_URL, api_error_detail
from heal.cli.console import examples, fail, group, out

if TYPE_CHECKING:
    import httpx

app = group("Send test alerts to a running heal.")

WEBHOOK_PATH = "/api/v1/alerts/alertmanager"
DEFAULT_LABELS = {"severity": "critical", "service": "checkout"}
# Alertmanager's "no end yet".
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{value!r} is not key=value", param_hint=f"--{what}")
        pairs[key.strip()] = item
    return pairs


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-01-01T12:00:00Z)",
            param_hint="--starts-at",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def start_of_hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def webhook_body(
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    status: str,
    starts_at: datetime,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) carrying one alert."""
    all_labels = {"alertname": name, **DEFAULT_LABELS, **labels}
    ends_at = _iso(now or datetime.now(UTC)) if status == "resolved" else GO_ZERO_TIME
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "heal-cli",
        "groupLabels": {"alertname": name},
        "commonLabels": all_labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [
            {
                "status": status,
                "labels": all_labels,
                "annotations": annotations,
                "startsAt": _iso(starts_at),
                "endsAt": ends_at,
                "generatorURL": "",
                "fingerprint": "",
            }
        ],
    }


@app.command(
    "send",
    epilog=examples(
        "heal alerts send --token demo-token --name CheckoutDown --label service=checkout",
        "heal alerts send --name CheckoutDown --label service=checkout --status resolved",
        "heal alerts send --file webhook.json",
    ),
)
def send(
    url: Annotated[
        str,
        typer.Option("--url", help="where heal listens", envvar="HEAL_URL", show_envvar=True),
    ] = API_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="HEAL_TOKEN",
            show_envvar=True,
            help="API token (`heal token new`)",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="the alertname label")] = "CheckoutDown",
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            metavar="KEY=VALUE",
            help="a label, repeatable; severity=critical and service=checkout unless given",
            show_default=False,
        ),
    ] = None,
    annotation: Annotated[
        list[str] | None,
        typer.Option(
            "--annotation",
            "-a",
            metavar="KEY=VALUE",
            help="an annotation, repeatable",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        Literal["firing", "resolved"], typer.Option("--status", help="firing or resolved")
    ] = "firing",
    starts_at: Annotated[
        str | None,
        typer.Option(
            "--starts-at",
            metavar="ISO-TIME",
            help="when the alert began [default: the start of the current UTC hour, so that "
            "`send` and then `send --status resolved` within the hour name the same "
            "occurrence]",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="send this file's JSON as the body, as-is (the other alert options are ignored)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Post one alert as an Alertmanager webhook (v4) and show what heal did with it.

    The alert carries severity=critical and service=checkout unless --label gives them
    (the demo's CheckoutDown rule matches on severity). heal identifies an alert
    occurrence by its labels and startsAt: a resolve must carry the same labels and
    start time as the firing it ends.
    """
    import httpx  # here: `heal --help` need not load the HTTP client

    sent_labels: dict[str, str] | None = None
    if file is not None:
        content = _read_json(file)
    else:
        begins = _time(starts_at) if starts_at else start_of_hour()
        body = webhook_body(
            name, _pairs(label, "label"), _pairs(annotation, "annotation"), status, begins
        )
        sent_labels = body["alerts"][0]["labels"]
        content = json.dumps(body).encode()
    endpoint = url.rstrip("/") + WEBHOOK_PATH
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.post(
            endpoint, content=content, headers=headers, timeout=API_TIMEOUT_SECONDS
        )
    except httpx.ConnectError:
        fail(f"cannot reach heal at {url}: is `heal serve`/`heal demo` running?")
    except httpx.TimeoutException:
        fail(f"heal at {url} did not answer within {API_TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as exc:
        fail(f"request to {endpoint} failed: {exc}")
    _report(response, token is not None, sent_labels)


def _read_json(file: Path) -> bytes:
    try:
        content = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", code=2)
    try:
        json.loads(content)
    except ValueError as exc:
        fail(f"{file} is not JSON: {exc}", code=2)
    return content


def _report(response: httpx.Response, sent_token: bool, sent_labels: dict[str, str] | None) -> None:
    if response.status_code == 202:
        summary = response.json()
        table = Table(title="202 Accepted", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        if sent_labels is not None:  # what was sent, defaults included
            table.add_row("labels sent", ", ".join(f"{k}={v}" for k, v in sent_labels.items()))
        for key in (
            "received",
            "new",
            "resolved",
            "duplicates",
            "incidents_opened",
            "incidents_resolved",
            "actions_created",
            "actions_joined",
        ):
            table.add_row(key.replace("_", " "), str(summary.get(key, "-")))
        ids = summary.get("incident_ids") or []
        table.add_row("incidents", ", ".join(str(i) for i in ids) or "-")
        out().print(table)
        return
    message = f"heal answered {response.status_code}: {api_error_detail(response)}"
    if response.status_code == 401 and not sent_token:
        message += "\n(no token was sent: pass --token or set HEAL_TOKEN)"
    if response.status_code == 503 and "retry-after" in response.headers:
        message += f" (retry after {response.headers['retry-after']} s)"
    fail(message)
