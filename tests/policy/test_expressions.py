"""The node language: JMESPath lookups, sandboxed Jinja2 templates and type coercion."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heal.policy.expressions import (
    ExpressionError,
    ValueFormat,
    check_expression,
    check_template,
    coerce,
    evaluate,
    render,
    render_structure,
    search,
)

CONTEXT: dict[str, Any] = {
    "alert": {"labels": {"alertname": "CheckoutDown", "service": "checkout"}},
    "settings": {"itsm_url": "http://itsm"},
    "execute_config": {
        "template_detail": [
            {"key": "title", "value": "CheckoutDown on checkout", "extra": 1},
            {"key": "priority", "value": 2, "extra": 2},
        ]
    },
    "response": {"data": {"sn": "T-1", "rows": [{"id": 1}, {"id": 2}]}},
}


class TestSearch:
    def test_projection_into_key_value_pairs(self) -> None:
        result = search("execute_config.template_detail[].{key: key, value: value}", CONTEXT)
        assert result == [
            {"key": "title", "value": "CheckoutDown on checkout"},
            {"key": "priority", "value": 2},
        ]

    def test_nested_lookup(self) -> None:
        assert search("response.data.sn", CONTEXT) == "T-1"

    def test_list_projection(self) -> None:
        assert search("response.data.rows[].id", CONTEXT) == [1, 2]

    def test_pipe_and_functions(self) -> None:
        assert search("response.data.rows[].id | length(@)", CONTEXT) == 2

    def test_missing_path_is_none(self) -> None:
        assert search("response.data.nothing.here", CONTEXT) is None

    def test_invalid_expression(self) -> None:
        with pytest.raises(ExpressionError, match=re.escape("JMESPath 'response.['")):
            search("response.[", CONTEXT)

    def test_runtime_type_error_is_an_expression_error(self) -> None:
        with pytest.raises(ExpressionError, match="abs"):
            search("abs(response.data.sn)", CONTEXT)

    def test_check_expression(self) -> None:
        check_expression("a.b[0]")
        with pytest.raises(ExpressionError):
            check_expression("a.[")

    @settings(max_examples=100)
    @given(
        d=st.dictionaries(
            st.text(alphabet="abcxyz_", min_size=1, max_size=4),
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats(allow_nan=False)
                | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                ),
                max_leaves=10,
            ),
            max_size=4,
        )
    )
    def test_identity_lookup(self, d: dict[str, Any]) -> None:
        assert search("a", {"a": d}) == d


class TestRender:
    def test_renders_with_context(self) -> None:
        source = "{{ alert.labels.alertname }} on {{ alert.labels.service }}"
        assert render(source, CONTEXT) == "CheckoutDown on checkout"

    def test_literal_without_braces_is_returned_unchanged(self) -> None:
        assert render("plain text", CONTEXT) == "plain text"

    def test_filters_and_statements(self) -> None:
        source = "{% for i in response.data.rows %}{{ i.id }},{% endfor %}{{ 'x' | upper }}"
        assert render(source, CONTEXT) == "1,2,X"

    def test_no_html_autoescape(self) -> None:
        assert render("{{ v }}", {"v": "<a&b>"}) == "<a&b>"

    @pytest.mark.parametrize(
        "source",
        ["{{ missing }}", "{{ missing.deeper.still }}", "{{ alert.labels.nope }}"],
    )
    def test_missing_variables_render_empty(self, source: str) -> None:
        assert render(source, CONTEXT) == ""

    def test_missing_variable_inside_text(self) -> None:
        assert render("{{ alert.labels.alertname }} on {{ alert.labels.x }}", CONTEXT) == (
            "CheckoutDown on "
        )

    def test_default_filter_applies_to_missing(self) -> None:
        assert render("{{ missing.x | default('n/a') }}", CONTEXT) == "n/a"

    def test_syntax_error(self) -> None:
        with pytest.raises(ExpressionError, match="template"):
            render("{{ sn ", CONTEXT)

    def test_runtime_error(self) -> None:
        with pytest.raises(ExpressionError, match="division by zero"):
            render("{{ 1 / 0 }}", CONTEXT)

    def test_check_template(self) -> None:
        check_template("{{ ok }}")
        with pytest.raises(ExpressionError):
            check_template("{% if %}")


class TestSandbox:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__ }}",
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ cycler.__init__.__globals__ }}",
            "{{ fn.__globals__ }}",
            "{{ fn.__code__ }}",
        ],
    )
    def test_dunder_access_never_leaks_python_objects(self, source: str) -> None:
        try:
            out = render(source, {"fn": lambda: None})
        except ExpressionError:
            return
        assert out == ""

    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "{{ ''.__class__.__base__.__subclasses__() }}",
            "{{ fn.__globals__['__builtins__'].open('/etc/passwd') }}",
        ],
    )
    def test_calling_unsafe_attributes_fails(self, source: str) -> None:
        with pytest.raises(ExpressionError, match=r"unsafe|not allowed"):
            render(source, {"fn": lambda: None})

    def test_sandbox_limits_ranges(self) -> None:
        with pytest.raises(ExpressionError, match=r"MAX_RANGE|too big"):
            render("{{ range(10**10) | list }}", CONTEXT)

    def test_safe_method_calls_still_work(self) -> None:
        assert render("{{ 'a-b'.split('-') | join('+') }}", CONTEXT) == "a+b"

    def test_unsafe_attribute_access_is_an_error(self) -> None:
        with pytest.raises(ExpressionError):
            render("{{ ''.__class__.__mro__ }}", CONTEXT)


class TestRenderStructure:
    def test_nested_dicts_and_lists(self) -> None:
        value = {
            "title": "{{ alert.labels.alertname }}",
            "fields": [{"k": "{{ response.data.sn }}", "n": 3}, "static", None, True],
            "inner": {"deep": ["{{ settings.itsm_url }}/x"]},
        }
        assert render_structure(value, CONTEXT) == {
            "title": "CheckoutDown",
            "fields": [{"k": "T-1", "n": 3}, "static", None, True],
            "inner": {"deep": ["http://itsm/x"]},
        }

    def test_keys_are_not_rendered(self) -> None:
        assert render_structure({"{{ x }}": "v"}, {"x": "y"}) == {"{{ x }}": "v"}

    def test_does_not_mutate_input(self) -> None:
        value = {"a": ["{{ x }}"]}
        render_structure(value, {"x": "y"})
        assert value == {"a": ["{{ x }}"]}

    @pytest.mark.parametrize("scalar", [1, 2.5, None, False])
    def test_scalars_pass_through(self, scalar: Any) -> None:
        assert render_structure(scalar, CONTEXT) == scalar


class TestEvaluate:
    def test_jmespath(self) -> None:
        assert evaluate("response.data.sn", ValueFormat.JMESPATH, CONTEXT) == "T-1"

    def test_jinja2(self) -> None:
        assert evaluate(["{{ response.data.sn }}"], ValueFormat.JINJA2, CONTEXT) == ["T-1"]

    def test_raw(self) -> None:
        assert evaluate("{{ not rendered }}", ValueFormat.RAW, CONTEXT) == "{{ not rendered }}"


class TestCoerce:
    @pytest.mark.parametrize(
        ("value", "type_name", "expected"),
        [
            ("5", "int", 5),
            (5.9, "int", 5),
            (7, "int", 7),
            ("1.5", "float", 1.5),
            (2, "float", 2.0),
            (3, "string", "3"),
            ("s", "string", "s"),
            ((1, 2), "list", [1, 2]),
            ([1], "list", [1]),
            ([("a", 1)], "dict", {"a": 1}),
            ({"a": 1}, "dict", {"a": 1}),
            (1, "bool", True),
            (0, "bool", False),
            (True, "bool", True),
        ],
    )
    def test_conversions(self, value: Any, type_name: str, expected: Any) -> None:
        result = coerce(value, type_name)
        assert result == expected
        assert type(result) is type(expected)

    @pytest.mark.parametrize("text", ["1", "true", "True", " TRUE ", "yes", "on", "On"])
    def test_truthy_strings(self, text: str) -> None:
        assert coerce(text, "bool") is True

    @pytest.mark.parametrize("text", ["0", "false", "False", "no", "off", ""])
    def test_falsy_strings(self, text: str) -> None:
        # Notably "false" is False, unlike Python's bool("false").
        assert coerce(text, "bool") is False

    @pytest.mark.parametrize("text", ["anything", "tru", "2"])
    def test_unrecognised_strings_are_not_silently_false(self, text: str) -> None:
        with pytest.raises(ExpressionError, match="to bool"):
            coerce(text, "bool")

    def test_bool_to_int_becomes_a_number(self) -> None:
        result = coerce(True, "int")
        assert result == 1
        assert type(result) is int

    def test_none_value_and_none_type_pass_through(self) -> None:
        assert coerce(None, "int") is None
        assert coerce("x", None) == "x"

    @pytest.mark.parametrize(
        ("value", "type_name"),
        [("abc", "int"), ("1.5", "int"), ("x", "float"), (5, "list"), ("x", "dict")],
    )
    def test_bad_conversion(self, value: Any, type_name: str) -> None:
        message = f"cannot convert {value!r} to {type_name}"
        with pytest.raises(ExpressionError, match=re.escape(message)):
            coerce(value, type_name)

    def test_bad_int_message(self) -> None:
        with pytest.raises(ExpressionError) as info:
            coerce("abc", "int")
        assert str(info.value) == "cannot convert 'abc' to int"
        assert isinstance(info.value.__cause__, ValueError)
