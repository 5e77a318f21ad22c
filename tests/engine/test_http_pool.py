"""The HTTP plugin's connection pool: every request gets its own connection, within limits."""

from __future__ import annotations

import asyncio

import httpx

from heal.demo.itsm import FakeITSM
from heal.plugins.http import HttpPlugin, _FairPool, _use_fair_pool


async def test_the_plugin_uses_the_fair_pool() -> None:
    plugin = HttpPlugin()
    try:
        assert type(plugin._client._transport._pool) is _FairPool  # type: ignore[attr-defined]
    finally:
        await plugin.aclose()


async def test_many_concurrent_requests_share_few_connections(
    itsm: tuple[FakeITSM, str],
) -> None:
    _fake, url = itsm
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=4))
    _use_fair_pool(client)
    pool = client._transport._pool  # type: ignore[attr-defined]
    try:
        created = await client.post(f"{url}/create_ticket/", json={"fields": []})
        sn = created.json()["data"]["sn"]

        async def poll() -> int:
            response = await client.get(f"{url}/get_ticket_status/", params={"sn": sn})
            assert len(pool.connections) <= 4
            return response.status_code

        assert await asyncio.gather(*(poll() for _ in range(60))) == [200] * 60
        assert 1 <= len(pool.connections) <= 4
    finally:
        await client.aclose()


async def test_expired_idle_connections_are_replaced(itsm: tuple[FakeITSM, str]) -> None:
    _fake, url = itsm
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=2, keepalive_expiry=0))
    _use_fair_pool(client)
    pool = client._transport._pool  # type: ignore[attr-defined]
    try:
        first = (await client.post(f"{url}/create_ticket/", json={"fields": []})).status_code
        connection = pool.connections[0]
        second = (await client.post(f"{url}/create_ticket/", json={"fields": []})).status_code
        assert (first, second) == (200, 200)
        assert connection not in pool.connections  # expired at once, so not reused
    finally:
        await client.aclose()
