"""JSON Schema of the policy file, for editor completion (``heal policy schema``)."""

from __future__ import annotations

import json

from heal.policy.plugins import policy_model


def policy_json_schema() -> str:
    """Every installed action type's keys are in it (``heal.plugins`` entry points)."""
    schema = policy_model().model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "heal policy"
    return json.dumps(schema, indent=2, sort_keys=True)
