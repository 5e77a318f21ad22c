"""Property-based: every operation of heal's own OpenAPI, fuzzed with schemathesis.

Whatever a caller sends, heal answers without a server error and with a body its OpenAPI
documents (422 included). SQLite only and a bounded number of examples, to stay fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from helpers import AUTH, SERVICE_TOKENS, policy_text
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from heal.api.app import create_app
from heal.app import Heal
from heal.policy import load_policy_text
from heal.settings import Settings
from heal.store import migrate

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


async def _migrated(url: str) -> Heal:
    heal = Heal.build(
        Settings(database_url=url, api_tokens=SERVICE_TOKENS),
        load_policy_text(policy_text("http://127.0.0.1:9")),  # never called: no worker
    )
    await migrate.upgrade(heal.db)
    # The app runs on schemathesis's own event loop: no connection may outlive this one.
    await heal.db.dispose()
    return heal


@pytest.fixture
def heal_openapi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[schemathesis.schemas.BaseSchema]:
    monkeypatch.setenv("HEAL_TEST_ITSM_TOKEN", "unused")
    heal = asyncio.run(_migrated(f"sqlite+aiosqlite:///{tmp_path}/heal.db"))
    app = create_app(heal, worker=False)  # its lifespan starts and stops heal
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    schemathesis_asgi.shutdown_lifespans()


# Per operation. schemathesis.pytest.from_fixture would name a test per operation, but
# it reads a pytest internal that pytest 9 no longer has.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


def _both_modes(operation: Any) -> SearchStrategy[schemathesis.Case]:
    """Valid requests (must not fail) and invalid ones (must get the documented 422)."""
    return operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )


def test_any_request_gets_a_documented_answer_and_never_a_5xx(
    heal_openapi: schemathesis.schemas.BaseSchema,
) -> None:
    failures: dict[str, str] = {}
    for result in heal_openapi.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=_both_modes(operation))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        try:
            call()
        except Exception as exc:
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
