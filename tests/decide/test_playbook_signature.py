"""Playbook signatures, similarity, the Wilson bound and ranking, as properties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from heal.domain.playbooks import (
    VOLATILE_LABELS,
    Candidate,
    Signature,
    rank,
    signature_of,
    similarity,
    stable_labels,
    wilson_lower_bound,
)

names = st.sampled_from(["namespace", "service", "deployment", "cluster", "team", "tier", "app"])
values = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
label_sets = st.dictionaries(names, values, max_size=6)
alertnames = st.sampled_from(["PodCrashLooping", "HighLatency", "DiskFull", "OOMKilled"])
severities = st.sampled_from(["critical", "warning", "info", ""])
texts = st.text(alphabet="abcdefgh ", max_size=40)
volatile = st.dictionaries(
    st.sampled_from(sorted(VOLATILE_LABELS)), st.text(min_size=1, max_size=30), max_size=4
)
generated_values = st.one_of(
    st.ip_addresses().map(str),
    st.uuids().map(str),
    st.from_regex(r"[a-z]{3,8}-[bcdfghjkz2456789]{8,10}-[bcdfghjk2456789]{5}", fullmatch=True),
)


def _sig(name: str, severity: str, labels: dict[str, str]) -> Signature:
    return signature_of({"alertname": name, **labels}, severity)


@given(alertnames, severities, label_sets, texts, alertnames, severities, label_sets, texts)
def test_similarity_is_symmetric_and_between_0_and_1(
    n1: str, s1: str, l1: dict[str, str], t1: str, n2: str, s2: str, l2: dict[str, str], t2: str
) -> None:
    a, b = _sig(n1, s1, l1), _sig(n2, s2, l2)
    forward, backward = similarity(a, t1, b, t2), similarity(b, t2, a, t1)
    assert forward == backward
    assert 0.0 <= forward <= 1.0
    assert (forward == 1.0) == (a.key == b.key)


@given(alertnames, severities, label_sets, texts)
def test_identical_symptoms_are_1(
    name: str, severity: str, labels: dict[str, str], text: str
) -> None:
    assert similarity(_sig(name, severity, labels), text, _sig(name, severity, labels), "") == 1.0


@given(alertnames, severities, label_sets, volatile)
def test_volatile_labels_never_change_the_signature(
    name: str, severity: str, labels: dict[str, str], noise: dict[str, str]
) -> None:
    assert _sig(name, severity, {**labels, **noise}).key == _sig(name, severity, labels).key


@given(alertnames, label_sets, st.sampled_from(["build", "owner", "shard"]), generated_values)
def test_generated_values_of_unknown_labels_are_dropped(
    name: str, labels: dict[str, str], extra: str, value: str
) -> None:
    noisy = _sig(name, "critical", {**labels, extra: value})
    assert noisy.key == _sig(name, "critical", labels).key


def test_a_workload_is_the_same_whichever_pod_or_replicaset_fired() -> None:
    one = {"namespace": "shop", "deployment": "checkout-7d9f8b6c4-x2x9z", "pod": "a-1"}
    two = {"namespace": "shop", "deployment": "checkout-5b6c7d8f9-qwz7k", "pod": "b-2"}
    expected = {"namespace": "shop", "deployment": "checkout"}
    assert stable_labels(one) == stable_labels(two) == expected
    assert _sig("A", "critical", one).key == _sig("A", "critical", two).key


def test_other_workloads_or_alerts_are_not_alike() -> None:
    base = _sig("PodCrashLooping", "critical", {"namespace": "shop", "deployment": "checkout"})
    other_alert = _sig("DiskFull", "critical", {"namespace": "shop", "deployment": "checkout"})
    other_pod = _sig("PodCrashLooping", "critical", {"namespace": "shop", "deployment": "cart"})
    assert similarity(base, "crash loop", other_alert, "crash loop") < 0.85
    assert 0.5 < similarity(base, "crash loop", other_pod, "crash loop") < 1.0


@given(st.integers(0, 200), st.integers(1, 200))
def test_wilson_bound_is_within_0_and_the_observed_rate(successes: int, extra: int) -> None:
    runs = successes + extra - 1 if successes else extra
    bound = wilson_lower_bound(successes, runs)
    assert 0.0 <= bound <= successes / runs


@given(st.integers(0, 199), st.integers(1, 200))
def test_wilson_bound_grows_with_successes(successes: int, runs: int) -> None:
    successes = min(successes, runs - 1)
    assert wilson_lower_bound(successes + 1, runs) > wilson_lower_bound(successes, runs)


def test_wilson_bound_prefers_evidence_over_luck() -> None:
    assert wilson_lower_bound(0, 0) == 0.0
    assert wilson_lower_bound(90, 100) > wilson_lower_bound(9, 10) > wilson_lower_bound(1, 1)


when = st.one_of(
    st.none(),
    st.integers(0, 1000).map(lambda m: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m)),
)
candidates = st.lists(
    st.builds(
        Candidate,
        playbook_id=st.integers(1, 10_000),
        similarity=st.one_of(st.just(1.0), st.floats(0, 0.999)),
        lower_bound=st.floats(0, 1),
        last_used_at=when,
    ),
    max_size=30,
    unique_by=lambda c: c.playbook_id,
)


@given(candidates, st.floats(0, 1))
def test_ranking_keeps_exact_and_similar_enough_and_orders_them(
    found: list[Candidate], threshold: float
) -> None:
    ranked = rank(found, threshold)
    assert {c.playbook_id for c in ranked} == {
        c.playbook_id for c in found if c.similarity == 1.0 or c.similarity >= threshold
    }
    exact = [c.exact for c in ranked]
    assert exact == sorted(exact, reverse=True)  # every exact one before any similar one
    for first, second in itertools.pairwise(ranked):
        if first.exact == second.exact:
            assert first.lower_bound >= second.lower_bound
            if first.lower_bound == second.lower_bound:
                assert first.similarity >= second.similarity


@given(candidates, st.floats(0, 1))
def test_ranking_does_not_depend_on_the_order_found(
    found: list[Candidate], threshold: float
) -> None:
    assert rank(found, threshold) == rank(list(reversed(found)), threshold)


def test_recency_breaks_a_tie() -> None:
    old = Candidate(1, 0.9, 0.5, datetime(2026, 1, 1, tzinfo=UTC))
    new = Candidate(2, 0.9, 0.5, datetime(2026, 2, 1, tzinfo=UTC))
    never = Candidate(3, 0.9, 0.5, None)
    assert [c.playbook_id for c in rank([never, old, new], 0.85)] == [2, 1, 3]


def test_a_minor_label_may_differ_a_workload_may_not() -> None:
    base = {"namespace": "shop", "deployment": "checkout", "tier": "web"}
    minor = _sig("A", "critical", {**base, "tier": "api"})
    workload = _sig("A", "critical", {**base, "deployment": "cart"})
    assert similarity(_sig("A", "critical", base), "down", minor, "down") >= 0.85
    assert similarity(_sig("A", "critical", base), "down", workload, "down") < 0.85
