"""Alert fingerprints and how a notification moves an occurrence forward."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heal.domain.alerts import (
    Alert,
    AlertsRefused,
    AlertStatus,
    IngestVerdict,
    admit,
    admit_all,
    classify,
    fingerprint_of,
)

LABELS = {"alertname": "CheckoutDown", "severity": "critical", "service": "checkout"}

label_dicts = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
    st.text(max_size=10),
    max_size=6,
)


class TestFingerprint:
    def test_is_16_lowercase_hex_chars(self) -> None:
        assert re.fullmatch(r"[0-9a-f]{16}", fingerprint_of(LABELS))

    def test_empty_label_set_has_a_fingerprint(self) -> None:
        assert re.fullmatch(r"[0-9a-f]{16}", fingerprint_of({}))

    def test_is_stable(self) -> None:
        assert fingerprint_of(dict(LABELS)) == fingerprint_of(dict(LABELS))

    def test_insertion_order_does_not_matter(self) -> None:
        reordered = dict(reversed(list(LABELS.items())))
        assert list(reordered) != list(LABELS)
        assert fingerprint_of(reordered) == fingerprint_of(LABELS)

    def test_differs_when_a_value_differs(self) -> None:
        assert fingerprint_of(LABELS) != fingerprint_of({**LABELS, "service": "payments"})

    def test_differs_when_a_label_is_added(self) -> None:
        assert fingerprint_of(LABELS) != fingerprint_of({**LABELS, "instance": "a"})

    def test_missing_label_differs_from_empty_label(self) -> None:
        assert fingerprint_of({"a": "1"}) != fingerprint_of({"a": "1", "b": ""})

    def test_key_value_boundary_matters(self) -> None:
        assert fingerprint_of({"ab": "c"}) != fingerprint_of({"a": "bc"})

    @given(labels=label_dicts, data=st.data())
    def test_shuffled_insertion_order_gives_same_fingerprint(
        self, labels: dict[str, str], data: st.DataObject
    ) -> None:
        items = data.draw(st.permutations(list(labels.items())))
        assert fingerprint_of(dict(items)) == fingerprint_of(labels)

    @given(labels=label_dicts.filter(bool), data=st.data(), new_value=st.text(max_size=10))
    def test_changing_one_value_changes_fingerprint(
        self, labels: dict[str, str], data: st.DataObject, new_value: str
    ) -> None:
        key = data.draw(st.sampled_from(sorted(labels)))
        if new_value == labels[key]:
            new_value += "x"
        assert fingerprint_of({**labels, key: new_value}) != fingerprint_of(labels)

    @given(labels=label_dicts)
    def test_format_property(self, labels: dict[str, str]) -> None:
        assert re.fullmatch(r"[0-9a-f]{16}", fingerprint_of(labels))


F, R = AlertStatus.FIRING, AlertStatus.RESOLVED


@pytest.mark.parametrize(
    ("known", "incoming", "verdict"),
    [
        (None, F, IngestVerdict.NEW_FIRING),
        (None, R, IngestVerdict.NEW_RESOLVED),
        (F, F, IngestVerdict.DUPLICATE),
        (F, R, IngestVerdict.RESOLVES),
        (R, R, IngestVerdict.DUPLICATE),
        # A late firing redelivery for a resolved occurrence never reopens it.
        (R, F, IngestVerdict.DUPLICATE),
    ],
)
def test_classify_transition_table(
    known: AlertStatus | None, incoming: AlertStatus, verdict: IngestVerdict
) -> None:
    assert classify(known, incoming) is verdict


def test_resolved_occurrence_never_reopens() -> None:
    verdicts = {classify(R, incoming) for incoming in AlertStatus}
    assert verdicts == {IngestVerdict.DUPLICATE}


def test_alert_name_and_context() -> None:
    starts = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    alert = Alert(
        fingerprint=fingerprint_of(LABELS),
        status=AlertStatus.FIRING,
        labels=dict(LABELS),
        annotations={"summary": "down"},
        starts_at=starts,
    )
    assert alert.name == "CheckoutDown"
    context = alert.as_context()
    assert context["status"] == "firing"
    assert context["labels"] == LABELS
    assert context["starts_at"] == "2024-05-01T12:00:00+00:00"
    assert context["ends_at"] is None
    assert context["source"] == "api"
    # The context is a copy: templates cannot mutate the alert.
    context["labels"]["severity"] = "info"
    assert alert.labels["severity"] == "critical"


def test_alert_without_alertname_has_empty_name() -> None:
    alert = Alert(
        fingerprint="0" * 16,
        status=AlertStatus.RESOLVED,
        labels={},
        annotations={},
        starts_at=datetime(2024, 5, 1, tzinfo=UTC),
        ends_at=datetime(2024, 5, 2, tzinfo=UTC),
    )
    assert alert.name == ""
    assert alert.as_context()["ends_at"] == "2024-05-02T00:00:00+00:00"


def test_separator_characters_in_values_do_not_collide() -> None:
    first = {"a": "1\x1fb\x1e2", "b": "3"}
    second = {"a": "1", "b": "2\x1fb\x1e3"}
    assert fingerprint_of(first) != fingerprint_of(second)


class TestAdmit:
    """What every backend stores, decided before any of them sees it."""

    @staticmethod
    def _alert(**changes: object) -> Alert:
        base = Alert(
            fingerprint="f",
            status=AlertStatus.FIRING,
            labels=dict(LABELS),
            annotations={},
            starts_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        return dataclasses.replace(base, **changes)

    def test_nul_is_escaped_in_names_and_values(self) -> None:
        admitted = admit(self._alert(labels={"a\x00": "b\x00c"}, annotations={"s": "\x00"}))
        assert admitted.labels == {"a\\u0000": "b\\u0000c"}
        assert admitted.annotations == {"s": "\\u0000"}

    @given(st.text(min_size=129, max_size=400))
    def test_a_long_fingerprint_is_hashed_stably_to_fit(self, fingerprint: str) -> None:
        if any("\ud800" <= c <= "\udfff" for c in fingerprint):
            return
        first = admit(self._alert(fingerprint=fingerprint)).fingerprint
        assert len(first) <= 128
        assert first == admit(self._alert(fingerprint=fingerprint)).fingerprint
        assert first != admit(self._alert(fingerprint=fingerprint + "x")).fingerprint

    @pytest.mark.parametrize(
        ("labels", "field"),
        [
            ({**LABELS, "severity": "s" * 51}, "labels.severity"),
            ({**LABELS, "x": "\ud800"}, "labels.x"),
            ({"a\x00": "1", "a\\u0000": "2"}, "labels"),
        ],
    )
    def test_refused_names_the_field(self, labels: dict[str, str], field: str) -> None:
        with pytest.raises(AlertsRefused) as refused:
            admit_all([self._alert(), self._alert(labels=labels)])
        [(index, refusal)] = refused.value.refusals
        assert (index, refusal.field) == (1, field)
