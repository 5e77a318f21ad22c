"""Forms of a secret that heal itself derives (Basic header, URL encoding) are redacted too."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from conftest import HealFactory
from fakes.server import serving
from helpers import AUTH, Clock, alert, drive
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from heal.api.app import create_app
from heal.store import actions_repo

# Characters that URL encoding and base64 both change, so each form differs from the others.
SECRET = "p@ss w/rd+s3cr3t&=ok"
USER = "heal-bot"


def _reflected(request: Request) -> dict[str, Any]:
    return {"url": str(request.url), "headers": dict(request.headers)}


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"result": True, "data": _reflected(request)})


async def _refuse(request: Request) -> JSONResponse:
    return JSONResponse({"message": json.dumps(_reflected(request))}, status_code=500)


@pytest.fixture
async def reflector() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"]), Route("/refuse", _refuse)])
    async with serving(app) as url:
        yield url


def _policy(url: str) -> str:
    auth = f"auth: {{type: basic, username: {USER}, secret: s}}"
    return f"""
secrets:
  s: {{env: HEAL_TEST_DERIVED_SECRET}}
actions:
  reflect:
    type: http
    timeout: 600
    nodes:
      - function: echo
        name: Echo
        request: {{url: "{url}/echo", method: POST, {auth}}}
        outputs:
          - {{key: headers, value: response.data.headers, format: jmespath}}
          - {{key: url, value: response.data.url, format: jmespath}}
        next_function: refuse
      - function: refuse
        name: Refuse
        request: {{url: "{url}/refuse", method: GET, {auth}}}
        inputs: [{{key: token, value: "{{{{ secrets.s }}}}", format: jinja2}}]
rules:
  - name: checkout-down
    match: {{alertname: CheckoutDown}}
    group_by: [alertname]
    skip_delay: 0
    actions: [{{action: reflect, signal: [firing]}}]
"""


def _derived_forms() -> list[str]:
    pair = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    return [SECRET, pair, pair.rstrip("="), quote(SECRET, safe=""), quote_plus(SECRET)]


async def test_basic_auth_and_url_encoded_secret_never_reach_the_api(
    make_heal: HealFactory, reflector: str, clock: Clock
) -> None:
    heal = await make_heal(
        _policy(reflector), clock=clock, environ={"HEAL_TEST_DERIVED_SECRET": SECRET}
    )
    await heal.ingest.ingest([alert()])
    async with heal.db.read() as connection:
        actions = await actions_repo.in_flight(connection, ["1:checkout-down:reflect"])
    action_id = actions["1:checkout-down:reflect"]
    row = await drive(heal, clock, action_id)
    assert row["status"] == "failure"  # both requests were made; the second was refused

    transport = httpx.ASGITransport(app=create_app(heal, manage_lifecycle=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://heal", headers=AUTH) as c:
        action = (await c.get(f"/api/v1/actions/{action_id}")).json()
        incident = (await c.get(f"/api/v1/incidents/{action['incident_id']}")).json()
    served = json.dumps([action, incident])

    assert "authorization" in json.dumps(action["outputs"])  # the reflection did happen
    assert "Basic ***" in served
    leaked = [form for form in _derived_forms() if form in served]
    assert leaked == []


LOG_SCRIPT = """
import logging, sys
from heal.app import Heal
from heal.observability import logging as heal_logging
from heal.policy import load_policy_text
from heal.settings import Settings
policy, header, encoded = sys.argv[1:4]
heal_logging.configure("INFO")
Heal.build(Settings(database_url="sqlite+aiosqlite:///heal.db"), load_policy_text(policy))
heal_logging.get_logger("heal.test").warning("sent", authorization=header)
logging.getLogger("httpx").warning("GET /refuse?token=%s", encoded)
"""


def test_derived_forms_never_reach_a_log_line(tmp_path: Path) -> None:
    pair = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            LOG_SCRIPT,
            _policy("http://127.0.0.1:9"),
            f"Basic {pair}",
            quote_plus(SECRET),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "HEAL_TEST_DERIVED_SECRET": SECRET},
    )
    printed = done.stdout + done.stderr
    assert "Basic ***" in printed
    assert "token=***" in printed
    assert [form for form in _derived_forms() if form in printed] == []
