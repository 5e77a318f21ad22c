"""Prototypes of the changes docs/performance.md recommends, applied by monkeypatching.

``python -m bench --experiment batch-insert,claim-batch`` starts heal with these patches so
their gain can be measured before anyone edits ``src/``. They are sketches for measurement,
not the implementation: each one names the function it stands in for.

- ``batch-insert``: ``alerts_repo`` / ``incidents_repo`` / ``actions_repo.insert_many``
  without ``sort_by_parameter_order=True`` (which SQLite cannot batch: SQLAlchemy sends
  one INSERT per row); ids are matched back by a natural key returned with them.
- ``claim-batch``: ``EmbeddedRuntime._claim_batch`` waits (at most 5 ms) until a quarter of
  the slots are free, so that under load one claim transaction leases many wakes instead
  of one.
- ``claim-rows``: ``actions_repo.claim_due`` returns the whole rows and ``actions_repo.load``
  serves the wake's read from them (stands in for passing the row to ``Engine.wake``).
- ``aiohttp``: ``HttpPlugin`` sends its requests with aiohttp instead of httpx (aiohttp is
  not a dependency: ``pip install --target DIR aiohttp`` and put DIR on ``PYTHONPATH``).
- ``inline-sqlite``: aiosqlite runs each call on the event loop's thread instead of handing
  it to its own thread and back (stands in for running each transaction as one call on a
  database thread: the cost measured is the thread round trips).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

NAMES = ("aiohttp", "batch-insert", "claim-batch", "claim-rows", "inline-sqlite")


def apply(names: list[str]) -> None:
    for name in names:
        {
            "aiohttp": _aiohttp,
            "batch-insert": _batch_insert,
            "claim-batch": _claim_batch,
            "claim-rows": _claim_rows,
            "inline-sqlite": _inline_sqlite,
        }[name]()


def _batch_insert() -> None:
    from heal.store import actions_repo, alerts_repo, incidents_repo
    from heal.store.tables import actions, alerts, incidents

    async def keyed(
        connection: AsyncConnection, table: Any, rows: list[dict[str, Any]], keys: list[str]
    ) -> list[int]:
        if not rows:
            return []
        result = await connection.execute(
            insert(table).returning(table.c.id, *(table.c[k] for k in keys)), rows
        )
        ids = {tuple(row[1:]): row[0] for row in result}
        return [ids[tuple(row[k] for k in keys)] for row in rows]

    async def alerts_insert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        return await keyed(connection, alerts, rows, ["fingerprint", "starts_at"])

    async def incidents_insert(
        connection: AsyncConnection, rows: list[dict[str, Any]]
    ) -> list[int]:
        return await keyed(connection, incidents, rows, ["open_key"])

    async def actions_insert(connection: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        # (incident, rule, action) is unique within one ingest batch.
        return await keyed(connection, actions, rows, ["incident_id", "rule", "action_name"])

    alerts_repo.insert_many = alerts_insert
    incidents_repo.insert_many = incidents_insert
    actions_repo.insert_many = actions_insert


def _claim_batch() -> None:
    from heal.runtime import embedded

    original = embedded.EmbeddedRuntime._claim_batch

    async def claim_batch(self: Any, engine: Any) -> int:
        await self._slots.acquire()
        self._slots.release()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.005
        while self.concurrency - len(self._tasks) < self.concurrency // 4:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.001)
        result: int = await original(self, engine)
        return result

    embedded.EmbeddedRuntime._claim_batch = claim_batch  # type: ignore[method-assign]


def _claim_rows() -> None:
    from heal.store import actions_repo
    from heal.store.tables import actions

    claimed: dict[int, dict[str, Any]] = {}
    original_load = actions_repo.load

    async def claim_due(
        connection: AsyncConnection, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[int, int, datetime]]:
        due = (
            select(actions.c.id)
            .where(
                actions.c.next_wake_at <= now,
                or_(actions.c.claimed_until.is_(None), actions.c.claimed_until < now),
            )
            .order_by(actions.c.next_wake_at)
            .limit(limit)
        )
        result = await connection.execute(
            update(actions)
            .where(actions.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=lease_until)
            .returning(*actions.c)
        )
        out = []
        for row in result:
            values = dict(row._mapping)
            claimed[values["id"]] = values
            out.append((values["id"], values["version"], values["next_wake_at"]))
        return out

    async def load(
        connection: AsyncConnection, action_id: int, for_update: bool = False
    ) -> dict[str, Any] | None:
        row = None if for_update else claimed.pop(action_id, None)
        return row if row is not None else await original_load(connection, action_id, for_update)

    actions_repo.claim_due = claim_due
    actions_repo.load = load


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
