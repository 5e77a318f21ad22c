"""Evaluation: the example cases (examples/decide-cases/) decided by the decision core with
the policy's tiers, the LLM a fake OpenAI-compatible server: pass rate, each failing case
with what was proposed instead, and latency figures per tier."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai import FakeOpenAI, Reply, answer, serving_openai

from heal.decide.evaluation import (
    CasesError,
    EvalReport,
    case_files,
    evaluate,
    load_cases,
    percentile,
)
from heal.decide.llm import LlmTier
from heal.decide.replay import without_llm
from heal.decide.tiers import Tier
from heal.policy.loader import load_policy_text
from heal.policy.models import Policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "decide-cases"
KEY = "sk-eval-test-key"


def example_policy(base_url: str) -> Policy:
    text = (EXAMPLES / "policy.yaml").read_text()
    return load_policy_text(text.replace("http://127.0.0.1:11434/v1", base_url))


def good_model(body: dict[str, Any]) -> Reply:
    """A model that reads the prompt and answers as an SRE would (and wrongly, with
    params outside the schema, for the certificate)."""
    prompt = json.dumps(body["messages"])
    if "PodCrashLooping" in prompt:
        return answer("restart-workload", {"namespace": "shop", "name": "checkout"}, 0.9)
    if "PodOOMKilled" in prompt:
        return answer("restart-workload", {"namespace": "payments", "name": "ledger"}, 0.8)
    if "NodeDiskFull" in prompt:
        return answer("clean-logs", {"host": "db-1"}, 0.85)
    return answer("restart-workload", {"namespace": "api", "name": "api"}, 0.4)


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=KEY)
    async with serving_openai(server):
        yield server


async def run_examples(policy: Policy) -> EvalReport:
    async with httpx.AsyncClient() as client:
        tiers: list[Tier] = []
        llm = LlmTier.from_policy(policy, secrets={"llm_key": KEY}, client=client)
        if llm is not None:
            tiers.append(llm)
        return await evaluate(policy, tiers, load_cases(case_files(EXAMPLES)))


async def test_the_examples_pass_against_a_good_model(llm: FakeOpenAI) -> None:
    llm.responder = good_model
    report = await run_examples(example_policy(llm.base_url))
    assert [(r.name, r.passed) for r in report.results] == [
        ("a crash-looping pod is restarted", True),
        ("an OOM-killed pod in payments is restarted", True),
        ("a full disk gets its logs cleaned", True),
        ("an unknown symptom goes to a person", True),
    ]
    assert report.pass_rate == 1.0
    assert len(llm.answered) == 4
    # The certificate's LLM proposal broke the params schema: the expert default decided.
    last = report.results[-1]
    assert last.proposal is not None
    assert last.proposal.tier.value == "expert"
    assert "params rejected" in str(last.attempts[0].rejected)
    by_tier = {t.tier: t for t in report.tiers}
    assert (by_tier["llm"].tried, by_tier["llm"].won) == (4, 3)
    assert (by_tier["expert"].tried, by_tier["expert"].won) == (1, 1)
    for stats in report.tiers:
        assert stats.p50_ms is not None
        assert stats.p95_ms is not None
        assert 0 <= stats.p50_ms <= stats.p95_ms
        assert stats.decision_p50_ms is not None
    data = report.as_dict()
    assert (data["cases"], data["passed"], data["pass_rate"]) == (4, 4, 1.0)
    assert data["p50_ms"] is not None
    assert data["p95_ms"] is not None


async def test_a_failing_case_says_what_was_proposed_instead(llm: FakeOpenAI) -> None:
    def cautious(body: dict[str, Any]) -> Reply:
        if "NodeDiskFull" in json.dumps(body["messages"]):
            return answer("open-ticket", {}, 0.6, "not sure which logs")
        return good_model(body)

    llm.responder = cautious
    report = await run_examples(example_policy(llm.base_url))
    assert report.passed == 3
    assert report.pass_rate == 0.75
    (failed,) = report.failed
    assert failed.name == "a full disk gets its logs cleaned"
    assert failed.source.endswith("workloads.yaml#3")
    assert failed.proposal is not None
    assert (failed.proposal.tier.value, failed.proposal.action) == ("llm", "open-ticket")
    assert failed.problem == (
        "proposed 'open-ticket', expected 'clean-logs'; param 'host' missing, expected 'db-1'"
    )
    shown = failed.as_dict()
    assert shown["proposed"]["rationale"] == "not sure which logs"
    assert shown["expected"] == {"action": "clean-logs", "params": {"host": "db-1"}, "tier": "llm"}


async def test_without_the_llm_the_expert_rules_decide_alone(llm: FakeOpenAI) -> None:
    report = await run_examples(without_llm(example_policy(llm.base_url)))
    assert llm.requests == []
    assert [t.tier for t in report.tiers] == ["expert"]
    (failed,) = report.failed
    assert failed.problem == (
        "proposed 'open-ticket', expected 'clean-logs'; param 'host' missing, expected "
        "'db-1'; decided by the expert tier, expected llm"
    )


def test_case_files_are_checked_with_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - name: no expectation\n    alerts: [{labels: {a: b}}]\n")
    with pytest.raises(CasesError, match=r"bad.yaml: cases.0.expect: Field required"):
        load_cases([bad])
    broken = tmp_path / "broken.yaml"
    broken.write_text("cases: [\n")
    with pytest.raises(CasesError, match=r"broken.yaml: not valid YAML"):
        load_cases([broken])
    with pytest.raises(CasesError, match="no such file or directory"):
        case_files(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "policy.yaml").write_text("rules: []\n")  # a policy beside cases is not a case
    with pytest.raises(CasesError, match="no case files"):
        case_files(empty)


def test_percentiles_are_measured_values() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
