"""How alerts group into incidents, and what an incident is called."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heal.domain.incidents import group_key, incident_title, severity_rank, worse_severity

LABELS = {"alertname": "CheckoutDown", "severity": "critical", "service": "checkout"}


class TestGroupKey:
    def test_other_labels_do_not_matter(self) -> None:
        a = group_key("r", ["alertname", "service"], {**LABELS, "instance": "a"})
        b = group_key("r", ["alertname", "service"], {**LABELS, "instance": "b", "x": "y"})
        assert a == b

    def test_group_by_order_does_not_matter(self) -> None:
        assert group_key("r", ["alertname", "service"], LABELS) == group_key(
            "r", ["service", "alertname"], LABELS
        )

    def test_label_insertion_order_does_not_matter(self) -> None:
        reordered = dict(reversed(list(LABELS.items())))
        assert group_key("r", ["alertname", "service"], LABELS) == group_key(
            "r", ["alertname", "service"], reordered
        )

    def test_different_group_values_differ(self) -> None:
        assert group_key("r", ["service"], LABELS) != group_key(
            "r", ["service"], {**LABELS, "service": "payments"}
        )

    def test_different_owners_never_share(self) -> None:
        assert group_key("rule-a", ["alertname"], LABELS) != group_key(
            "rule-b", ["alertname"], LABELS
        )

    def test_unmatched_owner(self) -> None:
        assert group_key("*", ["alertname"], LABELS).startswith("*|")

    def test_missing_group_label_groups_as_empty(self) -> None:
        assert group_key("r", ["service"], {"alertname": "x"}) == group_key(
            "r", ["service"], {"alertname": "y", "service": ""}
        )

    def test_empty_group_by_puts_everything_together(self) -> None:
        assert group_key("r", [], LABELS) == group_key("r", [], {"alertname": "Other"})

    def test_values_cannot_be_confused_across_labels(self) -> None:
        assert group_key("r", ["a", "b"], {"a": "x", "b": ""}) != group_key(
            "r", ["a", "b"], {"a": "", "b": "x"}
        )

    @given(
        labels=st.dictionaries(st.sampled_from("abcde"), st.text(max_size=5)),
        extra=st.dictionaries(st.sampled_from("vwxyz"), st.text(max_size=5)),
        group_by=st.lists(st.sampled_from("abcde"), unique=True),
        data=st.data(),
    )
    def test_key_depends_only_on_group_label_values(
        self,
        labels: dict[str, str],
        extra: dict[str, str],
        group_by: list[str],
        data: st.DataObject,
    ) -> None:
        shuffled = data.draw(st.permutations(group_by))
        assert group_key("r", group_by, labels) == group_key(
            "r", list(shuffled), {**extra, **labels}
        )


class TestSeverity:
    @pytest.mark.parametrize(
        ("current", "incoming", "expected"),
        [
            (None, None, None),
            (None, "warning", "warning"),
            ("warning", None, "warning"),
            ("warning", "critical", "critical"),
            ("critical", "warning", "critical"),
            ("info", "error", "error"),
            ("critical", "page", "critical"),  # equal rank keeps the current one
            ("page", "critical", "page"),
            ("WARNING", "info", "WARNING"),  # case-insensitive ranking
            ("info", "Critical", "Critical"),
            ("info", "bogus", "info"),  # unknown ranks lowest
            ("bogus", "info", "info"),
            (None, "bogus", "bogus"),
        ],
    )
    def test_worse_severity(
        self, current: str | None, incoming: str | None, expected: str | None
    ) -> None:
        assert worse_severity(current, incoming) == expected

    def test_rank_order(self) -> None:
        order = ["critical", "error", "warning", "low", "info", "none"]
        ranks = [severity_rank(s) for s in order]
        assert ranks == sorted(ranks, reverse=True)
        assert len(set(ranks)) == len(ranks)
        assert severity_rank(None) == severity_rank("whatever") == 0


class TestIncidentTitle:
    def test_alertname_with_group_details(self) -> None:
        title = incident_title(["alertname", "service"], LABELS)
        assert title == "CheckoutDown (service=checkout)"

    def test_details_follow_group_by_order(self) -> None:
        title = incident_title(["service", "severity"], LABELS)
        assert title == "CheckoutDown (service=checkout, severity=critical)"

    def test_only_alertname(self) -> None:
        assert incident_title(["alertname"], LABELS) == "CheckoutDown"

    def test_missing_group_labels_are_left_out(self) -> None:
        assert incident_title(["alertname", "region"], LABELS) == "CheckoutDown"

    def test_no_alertname(self) -> None:
        assert incident_title(["service"], {"service": "checkout"}) == "alert (service=checkout)"


def test_a_group_key_over_its_column_is_hashed_and_still_groups() -> None:
    long = {**LABELS, "alertname": "N" * 600}
    key = group_key("r", ["alertname"], long)
    assert len(key) <= 512
    assert key == group_key("r", ["alertname"], {**long, "instance": "other"})
    assert key != group_key("r", ["alertname"], {**long, "alertname": "N" * 601})
    assert len(incident_title(["alertname"], long)) == 500
