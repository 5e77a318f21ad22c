"""Keep secret values out of everything heal stores or prints."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Redactor:
    """Replaces every known secret value with ``***`` inside nested data.

    Values shorter than four characters are not masked: replacing every "a" or "1" in a
    timeline would destroy it while protecting nothing.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def __call__(self, value: Any) -> Any:
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value
