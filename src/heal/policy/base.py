"""The building blocks every part of the policy's shape uses: strict models and the
values that are checked as they load (templates, label matchers, time windows)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from heal.domain.approvals import TimeWindow, week_window
from heal.domain.matchers import LabelMatcher
from heal.policy.expressions import check_template


def _template_compiles(source: str) -> str:
    check_template(source)
    return source


def _matcher_parses(spec: str) -> str:
    LabelMatcher.parse("", spec)
    return spec


def _window_parses(window: str) -> str:
    TimeWindow.parse(window)
    return window


def _week_window_parses(window: str) -> str:
    week_window(window)
    return window


# Checked one by one, so that a problem is reported at its own key or item.
Template = Annotated[str, AfterValidator(_template_compiles)]
MatcherSpec = Annotated[str, AfterValidator(_matcher_parses)]
WindowSpec = Annotated[str, AfterValidator(_window_parses)]
WeekWindowSpec = Annotated[str, AfterValidator(_week_window_parses)]


class StrictModel(BaseModel):
    # Unknown keys are errors: a typo in a policy must not silently do nothing.
    # Attribute docstrings are the JSON Schema's descriptions: editors show them as help.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
