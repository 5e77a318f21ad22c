"""Prototypes of the changes docs/performance.md recommends, applied by monkeypatching.

``python -m bench --experiment inline-sqlite`` starts heal with these patches so their
gain can be measured before anyone edits ``src/``. They are sketches for measurement,
not the implementation: each one names the function it stands in for. (The earlier
prototypes batch-insert, claim-batch and claim-rows are now heal's own code.)

- ``aiohttp``: ``HttpPlugin`` sends its requests with aiohttp instead of httpx (aiohttp is
  not a dependency: ``pip install --target DIR aiohttp`` and put DIR on ``PYTHONPATH``).
- ``inline-sqlite``: aiosqlite runs each call on the event loop's thread instead of handing
  it to its own thread and back (stands in for running each transaction as one call on a
  database thread: the cost measured is the thread round trips).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

NAMES = ("aiohttp", "inline-sqlite")


def apply(names: list[str]) -> None:
    for name in names:
        {
            "aiohttp": _aiohttp,
            "inline-sqlite": _inline_sqlite,
        }[name]()


class _InlineQueue:
    """Stands in for aiosqlite's queue to its thread: runs the call at once, here."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Any]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


def _inline_sqlite() -> None:
    import aiosqlite.core

    original_init = aiosqlite.core.Connection.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._tx = _InlineQueue()

    def await_(self: Any) -> Any:
        return self._connect().__await__()  # no thread to start

    aiosqlite.core.Connection.__init__ = init  # type: ignore[method-assign]
    aiosqlite.core.Connection.__await__ = await_  # type: ignore[method-assign]


class _AiohttpResponse:
    """The part of ``httpx.Response`` that ``HttpPlugin`` reads."""

    def __init__(self, status: int, reason: str, content: bytes) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.content = content
        self.is_success = 200 <= status < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _AiohttpClient:
    """Stands in for ``httpx.AsyncClient.request`` as ``HttpPlugin.run_node`` calls it."""

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session: Any = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None,
        json: Any,
        headers: dict[str, str],
        auth: Any,
        timeout: float,
    ) -> _AiohttpResponse:
        import httpx

        aiohttp = self._aiohttp
        if auth is not None:
            raise NotImplementedError("the aiohttp experiment does not do auth")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200), auto_decompress=True
            )
        try:
            async with self._session.request(
                method,
                url,
                params={k: str(v) for k, v in (params or {}).items()},
                json=json,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
                return _AiohttpResponse(response.status, response.reason or "", body)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _aiohttp() -> None:
    import aiohttp  # noqa: F401  (fail now, not on the first wake, when it is missing)

    from heal.plugins import http

    original_init = http.HttpPlugin.__init__

    def init(self: Any, client: Any = None) -> None:
        original_init(self, client)
        self._client = _AiohttpClient()

    http.HttpPlugin.__init__ = init  # type: ignore[method-assign]
