"""Each webhook channel against its fake, one message at a time: what is sent, and how
each answer is read (delivered, retry after, permanent)."""

from __future__ import annotations

import time

import pytest
from fakes.hooks import FakeDiscord, FakeReceiver, FakeTeams
from fakes.server import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from heal.notify.channels import ChannelError
from heal.notify.webhooks import DiscordChannel, Message, TeamsChannel, WebhookChannel

MESSAGE = Message(12, "incident_opened", "Incident opened: #3 DiskFull", "disk is full")


async def test_the_webhook_signs_timestamp_dot_body() -> None:
    receiver = FakeReceiver("k")
    async with serving(receiver.app()) as url:
        channel = WebhookChannel("hook", f"{url}/hook", "k")
        await channel.send(MESSAGE, now=time.time())
        await channel.aclose()
    (call,) = receiver.calls
    assert call.method == "incident_opened"
    assert call.payload == {
        "id": 12,
        "event": "incident_opened",
        "title": "Incident opened: #3 DiskFull",
        "text": "disk is full",
    }


async def test_an_unsigned_webhook_carries_no_signature() -> None:
    seen: list[dict[str, str]] = []

    async def record(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hook", record, methods=["POST"])])
    async with serving(app) as url:
        channel = WebhookChannel("hook", f"{url}/hook", None)
        await channel.send(MESSAGE, now=1767268800)
        await channel.aclose()
    (headers,) = seen
    assert "x-heal-signature" not in headers
    assert headers["x-heal-timestamp"] == "1767268800"
    assert headers["x-heal-delivery"] == "12"


async def test_a_long_message_fits_discords_limit() -> None:
    discord = FakeDiscord()
    async with serving(discord.app()) as url:
        channel = DiscordChannel("d", f"{url}/api/webhooks/1/good-token")
        await channel.send(Message(1, "e", "t", "x" * 5000), now=0)
        await channel.aclose()
    (call,) = discord.calls
    assert len(call.payload["content"]) == 2000
    assert call.payload["allowed_mentions"] == {"parse": []}  # no @everyone from an alert


async def test_discord_rate_limit_says_how_long_and_an_unknown_webhook_is_permanent() -> None:
    discord = FakeDiscord(rate_limited=1, retry_after=2.5)
    async with serving(discord.app()) as url:
        good = DiscordChannel("d", f"{url}/api/webhooks/1/good-token")
        with pytest.raises(ChannelError) as limited:
            await good.send(MESSAGE, now=0)
        gone = DiscordChannel("d", f"{url}/api/webhooks/1/revoked")
        with pytest.raises(ChannelError) as unknown:
            await gone.send(MESSAGE, now=0)
        await good.aclose()
        await gone.aclose()
    assert (limited.value.retry_after, limited.value.permanent) == (2.5, False)
    assert unknown.value.permanent
    assert "revoked" not in str(unknown.value)  # the URL's token never shows


async def test_teams_200_with_an_error_text_is_not_delivered() -> None:
    teams = FakeTeams(answer_200_with="Webhook message delivery failed with error: bad card")
    async with serving(teams.app()) as url:
        channel = TeamsChannel("t", f"{url}/webhookb2/x")
        with pytest.raises(ChannelError) as refused:
            await channel.send(MESSAGE, now=0)
        teams.answer_200_with = "Microsoft Teams endpoint returned HTTP error 429"
        with pytest.raises(ChannelError) as throttled:
            await channel.send(MESSAGE, now=0)
        await channel.aclose()
    assert refused.value.permanent
    assert not throttled.value.permanent
