"""Label matchers as a policy author writes them: ``=``, ``!=``, ``=~``, ``!~`` or a bare value."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from heal.domain.matchers import LabelMatcher, MatchOp, matches_all

LABELS = {"alertname": "CheckoutDown", "severity": "critical", "service": "checkout"}


@pytest.mark.parametrize(
    ("spec", "op", "value"),
    [
        ("critical", MatchOp.EQ, "critical"),
        ("=critical", MatchOp.EQ, "critical"),
        ("!=critical", MatchOp.NE, "critical"),
        ("=~crit.*", MatchOp.RE, "crit.*"),
        ("!~crit.*", MatchOp.NRE, "crit.*"),
        ("", MatchOp.EQ, ""),
        ("=", MatchOp.EQ, ""),
        ("!=", MatchOp.NE, ""),
        ("==x", MatchOp.EQ, "=x"),
        ("a=b", MatchOp.EQ, "a=b"),
        ("!", MatchOp.EQ, "!"),
    ],
)
def test_parse_operator_and_value(spec: str, op: MatchOp, value: str) -> None:
    matcher = LabelMatcher.parse("severity", spec)
    assert matcher.name == "severity"
    assert matcher.op is op
    assert matcher.value == value


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("critical", True),
        ("warning", False),
        ("=critical", True),
        ("=warning", False),
        ("!=critical", False),
        ("!=warning", True),
        ("=~critical|page", True),
        ("=~warning|page", False),
        ("!~critical|page", False),
        ("!~warning|page", True),
    ],
)
def test_operators_against_labels(spec: str, expected: bool) -> None:
    assert LabelMatcher.parse("severity", spec).matches(LABELS) is expected


def test_bare_value_is_equality_not_substring() -> None:
    matcher = LabelMatcher.parse("severity", "crit")
    assert not matcher.matches({"severity": "critical"})
    assert matcher.matches({"severity": "crit"})


@pytest.mark.parametrize(
    ("spec", "actual", "expected"),
    [
        ("=~crit", "critical", False),  # anchored at the end
        ("=~crit.*", "critical", True),
        ("=~ritical", "critical", False),  # anchored at the start
        ("=~.*ritical", "critical", True),
        ("=~critical|page", "page", True),
        ("=~critical|page", "pager", False),  # alternation is anchored as a whole
        ("=~critical|page", "xcritical", False),
        ("!~crit", "critical", True),
        ("!~crit.*", "critical", False),
        ("=~", "", True),
        ("=~", "x", False),
    ],
)
def test_regex_is_fully_anchored(spec: str, actual: str, expected: bool) -> None:
    assert LabelMatcher.parse("severity", spec).matches({"severity": actual}) is expected


def test_regex_is_case_sensitive() -> None:
    assert not LabelMatcher.parse("severity", "=~critical").matches({"severity": "CRITICAL"})


class TestMissingLabelIsEmptyString:
    def test_not_empty_matches_only_present_non_empty(self) -> None:
        matcher = LabelMatcher.parse("foo", "!=")
        assert not matcher.matches({})
        assert not matcher.matches({"foo": ""})
        assert matcher.matches({"foo": "bar"})

    def test_equal_empty_matches_missing_and_empty(self) -> None:
        matcher = LabelMatcher.parse("foo", "=")
        assert matcher.matches({})
        assert matcher.matches({"foo": ""})
        assert not matcher.matches({"foo": "bar"})

    def test_bare_empty_matches_missing(self) -> None:
        assert LabelMatcher.parse("foo", "").matches({"other": "x"})

    def test_ne_value_matches_missing_label(self) -> None:
        assert LabelMatcher.parse("foo", "!=bar").matches({})

    def test_eq_value_does_not_match_missing_label(self) -> None:
        assert not LabelMatcher.parse("foo", "bar").matches({})

    def test_regex_matching_empty_matches_missing(self) -> None:
        assert LabelMatcher.parse("foo", "=~.*").matches({})
        assert LabelMatcher.parse("foo", "=~a|").matches({})
        assert not LabelMatcher.parse("foo", "=~.+").matches({})
        assert LabelMatcher.parse("foo", "!~.+").matches({})


@pytest.mark.parametrize("spec", ["=~(", "!~[a-", "=~*crit", "=~a{2,1}"])
def test_invalid_regex_raises_value_error_with_the_pattern(spec: str) -> None:
    with pytest.raises(ValueError, match="invalid regular expression") as info:
        LabelMatcher.parse("severity", spec)
    assert repr(spec[2:]) in str(info.value)


def test_invalid_text_is_fine_for_equality() -> None:
    # Only regex operators compile their value.
    assert LabelMatcher.parse("severity", "(").matches({"severity": "("})
    assert LabelMatcher.parse("severity", "!=(").matches({"severity": "x"})


def test_str_shows_name_operator_and_value() -> None:
    assert str(LabelMatcher.parse("severity", "=~critical|page")) == "severity=~'critical|page'"
    assert str(LabelMatcher.parse("severity", "warning")) == "severity='warning'"


def test_matches_all() -> None:
    matchers = [
        LabelMatcher.parse("alertname", "CheckoutDown"),
        LabelMatcher.parse("severity", "=~critical|page"),
    ]
    assert matches_all(matchers, LABELS)
    assert not matches_all(matchers, {**LABELS, "severity": "warning"})
    assert matches_all([], {})


# --- properties ---------------------------------------------------------------------------

label_names = st.sampled_from(["foo", "bar", "severity"])
label_values = st.text(max_size=8)
label_dicts = st.dictionaries(label_names, label_values, max_size=3)


# "=~x" is the regex operator, so equality with a value starting with "~" is written bare.
eq_values = label_values.filter(lambda v: not v.startswith("~"))


def test_equality_with_leading_tilde_is_written_bare() -> None:
    assert LabelMatcher.parse("foo", "=~x").op is MatchOp.RE
    bare = LabelMatcher.parse("foo", "~x")
    assert (bare.op, bare.value) == (MatchOp.EQ, "~x")


@given(labels=label_dicts, value=eq_values)
def test_eq_and_ne_are_complements(labels: dict[str, str], value: str) -> None:
    eq = LabelMatcher.parse("foo", "=" + value)
    ne = LabelMatcher.parse("foo", "!=" + value)
    assert eq.op is MatchOp.EQ
    assert ne.op is MatchOp.NE
    assert eq.matches(labels) != ne.matches(labels)


def _regexes() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet="ab.*+?|", max_size=6),
        st.builds(re.escape, label_values),
    ).filter(_compiles)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(f"(?:{pattern})")
    except re.error:
        return False
    return True


@given(labels=label_dicts, pattern=_regexes())
def test_re_and_nre_are_complements(labels: dict[str, str], pattern: str) -> None:
    regex = LabelMatcher.parse("foo", "=~" + pattern)
    not_regex = LabelMatcher.parse("foo", "!~" + pattern)
    assert regex.matches(labels) != not_regex.matches(labels)


@given(labels=label_dicts, value=eq_values)
def test_escaped_regex_behaves_like_equality(labels: dict[str, str], value: str) -> None:
    regex = LabelMatcher.parse("foo", "=~" + re.escape(value))
    eq = LabelMatcher.parse("foo", "=" + value)
    assert regex.matches(labels) == eq.matches(labels)
    assert regex.matches({"foo": value})


@given(
    op=st.sampled_from(list(MatchOp)),
    value=st.text(alphabet="abc=!~", max_size=6).filter(_compiles),
)
def test_parse_of_str_round_trips_operator(op: MatchOp, value: str) -> None:
    assume(not (op is MatchOp.EQ and value.startswith("~")))
    matcher = LabelMatcher.parse("foo", op.value + value)
    assert matcher.op is op
    assert matcher.value == value
    rendered = str(matcher)
    assert rendered.startswith("foo")
    again = LabelMatcher.parse("foo", rendered.removeprefix("foo"))
    assert again.op is op


def test_case_insensitive_inline_flag_as_in_prometheus() -> None:
    matcher = LabelMatcher.parse("severity", "=~(?i)critical")
    assert matcher.matches({"severity": "CRITICAL"})
    assert not matcher.matches({"severity": "CRITICALx"})
