"""Keep secret values out of everything heal stores or prints."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_SECRET = 4
# What httpx leaves unescaped in a URL it is given whole (RFC 3986 sub-delims and ":@/?").
_URL_SAFE = "!$&'()*+,;=:@/?"


def secret_forms(secret: str) -> set[str]:
    """The secret as heal may send it: plain, URL-encoded (query parameters, a URL rendered
    from a template) and JSON-escaped (a request body). A server that echoes its request
    shows one of these; ``Bearer <secret>`` contains the plain form."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret, safe=_URL_SAFE),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
    }


def credential_forms(username: str, secret: str) -> set[str]:
    """The Basic ``Authorization`` value heal builds from a username and its secret.

    Without its ``=`` padding, so an echo that strips the padding is masked as well.
    """
    pair = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {pair.rstrip("=")}


class Redactor:
    """Replaces every known secret value, and the forms heal derives from it, with ``***``
    inside nested data.

    Values shorter than four characters are not masked: replacing every "a" or "1" in a
    timeline would destroy it while protecting nothing.
    """

    def __init__(
        self, secrets: Iterable[str] = (), credentials: Iterable[tuple[str, str]] = ()
    ) -> None:
        self._plain = {s for s in secrets if len(s) >= _MIN_SECRET}
        self._credentials: set[tuple[str, str]] = set()
        self._secrets: list[str] = []
        self._rebuild(credentials)

    def _rebuild(self, credentials: Iterable[tuple[str, str]]) -> None:
        self._credentials.update((u, s) for u, s in credentials if len(s) >= _MIN_SECRET)
        forms: set[str] = set()
        for secret in self._plain:
            forms |= secret_forms(secret)
        for username, secret in self._credentials:
            forms |= credential_forms(username, secret)
        # Longest first, so a form that contains another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def add_credential(self, username: str, secret: str) -> None:
        """Also mask the Basic value of ``username:secret`` (a node's auth met at run time,
        e.g. from an action snapshot taken under an earlier policy)."""
        if (username, secret) not in self._credentials and len(secret) >= _MIN_SECRET:
            self._rebuild([(username, secret)])

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
