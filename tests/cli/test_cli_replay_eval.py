"""heal replay and heal decide eval through the real command line: tables, --json, exit
codes and one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import heal_cli, isolate, sqlite_url
from fakes.openai import FakeOpenAI, answer, serving_openai

from heal.app import Heal
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy import load_policy_text
from heal.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "decide-cases"
POLICY = """
actions:
  open-ticket: {type: local, command: [echo, ticket]}
  page-oncall: {type: local, command: [echo, page], needs_approval: true}
rules:
  - name: disk-full
    match: {alertname: DiskFull}
    group_by: [alertname, instance]
    actions: [{action: open-ticket}]
"""
CHANGED = POLICY.replace(
    "[{action: open-ticket}]", "[{action: open-ticket}, {action: page-oncall}]"
)
KEY = "sk-cli-eval-key"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _disk_alert(starts: datetime) -> Alert:
    labels = {"alertname": "DiskFull", "severity": "warning", "instance": "db-1"}
    return Alert(
        fingerprint=fingerprint_of(labels),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={},
        starts_at=starts,
    )


@pytest.fixture
def recorded(tmp_path: Path) -> str:
    """A database holding one DiskFull alert of an hour ago, ingested with POLICY."""
    url = sqlite_url(tmp_path)
    (tmp_path / "heal.yaml").write_text(POLICY)
    (tmp_path / "new.yaml").write_text(CHANGED)

    async def work() -> None:
        heal = Heal.build(Settings(database_url=url), load_policy_text(POLICY))
        await heal.start(worker=False)
        try:
            await heal.ingest.ingest([_disk_alert(datetime.now(UTC) - timedelta(hours=1))])
        finally:
            await heal.stop()

    asyncio.run(work())
    return url


def test_replay_prints_what_would_go_differently(recorded: str) -> None:
    same = heal_cli("replay", "--since", "1d", "-c", "heal.yaml", "--database-url", recorded)
    assert same.exit_code == 0, same.output
    assert "replayed 1 alerts from" in same.output
    assert "1 incidents, 0 would go differently" in same.output
    assert "replay cannot know:" in same.output

    changed = heal_cli(
        "replay", "--since", "1d", "--policy", "new.yaml", "--database-url", recorded
    )
    assert changed.exit_code == 0, changed.output
    assert "1 incidents, 1 would go differently" in changed.output
    assert "page-oncall: would be created (needs approval); was not" in changed.output
    assert "open-ticket (firing) run" in changed.output
    assert "would create: 1 needs approval, 1 run" in changed.output

    data = json.loads(
        heal_cli(
            "replay", "--since", "1d", "--policy", "new.yaml", "--json", "--changed",
            "--database-url", recorded,
        ).stdout
    )  # fmt: skip
    assert (data["alerts"], data["incidents"], data["changed"]) == (1, 1, 1)
    (incident,) = data["replayed"]
    assert [a["verdict"] for a in incident["would"]["actions"]] == ["run", "needs approval"]
    assert [a["action"] for a in incident["did"]["actions"]] == ["open-ticket"]
    assert data["llm"] == "none"

    unchanged = heal_cli(
        "replay", "--since", "1d", "-c", "heal.yaml", "--changed", "--json",
        "--database-url", recorded,
    )  # fmt: skip
    assert json.loads(unchanged.stdout)["replayed"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "invalid --since 'last tuesday': give a span before now"),
        (["--since", "1h", "--until", "2h"], "is not before --until"),
        (["--policy", "nowhere.yaml"], "no policy file at nowhere.yaml (--policy)"),
        ([], "no policy: pass --policy FILE, or the one heal runs with (-c or HEAL_CONFIG)"),
    ],
)
def test_replay_refuses_bad_input_in_one_line(recorded: str, args: list[str], message: str) -> None:
    result = heal_cli("replay", *args, "--database-url", recorded)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_replay_of_a_policy_that_does_not_load_names_the_problem(recorded: str) -> None:
    Path("broken.yaml").write_text("rules:\n  - name: x\n    actions: [{action: nope}]\n")
    result = heal_cli("replay", "--policy", "broken.yaml", "--database-url", recorded)
    assert result.exit_code == 2
    assert "broken.yaml:" in result.output
    assert "nope" in result.output


@contextlib.contextmanager
def fake_llm_in_a_thread(fake: FakeOpenAI) -> Iterator[str]:
    """The fake served by a loop of its own: the command runs its own asyncio.run."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serving_openai(fake):
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield fake.base_url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def _example_policy(tmp_path: Path, base_url: str) -> Path:
    policy = tmp_path / "policy.yaml"
    text = (EXAMPLES / "policy.yaml").read_text()
    policy.write_text(text.replace("http://127.0.0.1:11434/v1", base_url))
    return policy


def test_decide_eval_runs_the_examples_against_an_llm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEAL_LLM_API_KEY", KEY)
    fake = FakeOpenAI(api_key=KEY)
    # A model that always wants a ticket: only the case that expects one passes.
    fake.responder = lambda body: answer("open-ticket", {}, 0.7, "a person should look")
    with fake_llm_in_a_thread(fake) as base_url:
        policy = _example_policy(tmp_path, base_url)
        table = heal_cli("decide", "eval", str(EXAMPLES), "--policy", str(policy))
        as_json = heal_cli(
            "decide", "eval", str(EXAMPLES), "--policy", str(policy), "--json",
            "--min-pass-rate", "0",
        )  # fmt: skip
    assert table.exit_code == 1, table.output
    assert "1/4 cases passed (25%)" in table.output
    assert "Failing cases (3)" in table.output
    assert "llm: open-ticket" in table.output
    assert "proposed 'open-ticket', expected 'clean-logs'" in table.output
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["cases"], data["passed"]) == (4, 1)
    # the playbooks (none learned in the throwaway database), then the LLM
    assert [t["tier"] for t in data["tiers"]] == ["playbook", "llm"]
    assert data["tiers"][1]["p95_ms"] is not None
    assert fake.answered  # the fake was really asked
    assert all(r.authorization == f"Bearer {KEY}" for r in fake.answered)


def test_decide_eval_without_the_llm_and_its_errors(tmp_path: Path) -> None:
    policy = _example_policy(tmp_path, "http://127.0.0.1:9/v1")
    # No HEAL_LLM_API_KEY is needed: the LLM is left out.
    result = heal_cli(
        "decide", "eval", str(EXAMPLES), "--policy", str(policy), "--no-llm",
        "--min-pass-rate", "0.75",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3/4 cases passed (75%)" in result.output
    assert "decided by the expert tier, expected llm" in result.output

    missing = heal_cli("decide", "eval", "nowhere/", "--policy", str(policy))
    assert missing.exit_code == 2
    assert "nowhere: no such file or directory" in missing.output
    key = heal_cli("decide", "eval", str(EXAMPLES), "--policy", str(policy))
    assert key.exit_code == 2
    assert "HEAL_LLM_API_KEY is not set" in key.output
