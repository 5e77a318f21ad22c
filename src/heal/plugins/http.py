"""The config-driven ``http`` plugin: one node is one HTTP request (the FTA model).

Inputs become the JSON body (or the query string for GET/DELETE); the whole JSON
response is ``response`` for the outputs. A non-2xx answer, a body that is not JSON, or
an envelope that says ``"result": false`` fails the node with the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpcore
import httpx

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult, PluginContext
from heal.policy.expressions import ExpressionError, coerce, evaluate, render
from heal.policy.models import Auth, Node, ValueMapping

_QUERY_METHODS = {"GET", "DELETE"}
_MESSAGE_LIMIT = 500
_PARSED_URLS = 1024
_EXPIRY_SWEEP_SECONDS = 1.0


class HttpPlugin:
    type = "http"

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        if client is None:
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
                follow_redirects=False,
            )
            _use_fair_pool(client)
        self._client = client
        self._urls: dict[str, httpx.URL] = {}

    @classmethod
    def from_context(cls, context: PluginContext) -> HttpPlugin:
        return cls()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def cancel(self, call: NodeCall) -> str | None:
        """A request already sent cannot be taken back; nothing to stop."""
        return None

    def _parsed(self, url: str) -> httpx.URL:
        """httpx parses every URL string (host IDNA, IP checks): a few hundred µs per
        request at polling rates. Nodes call the same few URLs, so keep them parsed."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= _PARSED_URLS:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def run_node(self, call: NodeCall) -> NodeResult:
        node = call.node
        if not isinstance(node, Node):
            raise TypeError(f"the http plugin runs HTTP nodes, not {type(node).__name__}")
        request_context = {**call.context, "secrets": dict(call.secrets)}
        try:
            inputs = evaluate_mappings(node.inputs, request_context)
            url = render(node.request.url, request_context)
            headers = {k: render(v, request_context) for k, v in node.request.headers.items()}
        except ExpressionError as exc:
            raise NodeFailed(f"bad input: {exc}") from exc
        headers["Idempotency-Key"] = call.idempotency_key
        headers["X-Heal-Action"] = str(call.action_id)
        auth = _auth(node.request.auth, call.secrets)
        method = node.request.method
        try:
            response = await self._client.request(
                method,
                self._parsed(url),
                params=_query(inputs) if method in _QUERY_METHODS else None,
                json=None if method in _QUERY_METHODS else inputs,
                headers=headers,
                auth=auth,
                timeout=call.timeout,
            )
        except httpx.TimeoutException as exc:
            raise NodeFailed(
                f"{method} {url}: no answer within {call.timeout:g} s", inputs=inputs
            ) from exc
        except httpx.HTTPError as exc:
            raise NodeFailed(f"{method} {url}: {type(exc).__name__}: {exc}", inputs=inputs) from exc

        body = _json_body(response)
        if not response.is_success:
            message = _server_message(body, response)
            raise NodeFailed(
                f"{method} {url} answered HTTP {response.status_code}: {message}", inputs=inputs
            )
        if body is _NOT_JSON:
            raise NodeFailed(f"{method} {url} answered with a body that is not JSON", inputs=inputs)
        if isinstance(body, dict) and body.get("result") is False:
            message = _server_message(body, response)
            raise NodeFailed(
                f"{method} {url} refused (code {body.get('code')}): {message}", inputs=inputs
            )
        try:
            outputs = evaluate_mappings(node.outputs, {**call.context, "response": body})
        except ExpressionError as exc:
            raise NodeFailed(f"bad output mapping: {exc}", inputs=inputs) from exc
        return NodeResult(inputs=inputs, outputs=outputs)


def evaluate_mappings(mappings: list[ValueMapping], context: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate in order; each mapping sees the ones before it (``url`` can use ``sn``)."""
    values: dict[str, Any] = {}
    scope = dict(context)
    for mapping in mappings:
        value = coerce(evaluate(mapping.value, mapping.format, scope), mapping.type)
        values[mapping.key] = value
        scope[mapping.key] = value
    return values


def _auth(auth: Auth | None, secrets: Mapping[str, str]) -> httpx.Auth | None:
    if auth is None:
        return None
    secret = secrets.get(auth.secret, "")
    if auth.type == "basic":
        return httpx.BasicAuth(auth.username or "", secret)
    return _Bearer(secret)


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _query(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if v is not None}


_NOT_JSON = object()


def _json_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return _NOT_JSON


def _server_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:_MESSAGE_LIMIT]
    text = response.text.strip()
    return text[:_MESSAGE_LIMIT] if text else response.reason_phrase


class _FairPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, assigning requests to connections in O(connections), once each.

    httpcore 1.0's ``_assign_requests_to_connections`` runs on every request and every
    response close. For each pooled connection it polls the socket of every idle one
    (``has_expired``: one ``poll()`` system call each) and rebuilds a list of all of them
    (quadratic); and it can hand one idle connection to several queued requests at once,
    all but one of which then fail with ``ConnectionNotAvailable`` and go round again.
    At 32 concurrent requests that was ~8 passes and 2.8 ms of CPU per request.

    Here a connection already assigned to a request is not assigned again, idle
    connections are checked for expiry (keep-alive ran out, or the server closed them)
    when one is about to be reused and in a sweep at most once a second, and the idle
    count is counted once. HTTP/1.1 only (a connection serves one request at a time):
    :func:`_use_fair_pool` does not install it on a pool that may speak HTTP/2.
    """

    _last_sweep = 0.0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        now = time.monotonic()
        sweep = now - self._last_sweep >= _EXPIRY_SWEEP_SECONDS
        if sweep:
            self._last_sweep = now
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.is_idle():
                if sweep and connection.has_expired():
                    closing.append(connection)
                    continue
                if idle >= self._max_keepalive_connections:
                    closing.append(connection)
                    continue
                idle += 1
            kept.append(connection)
        self._connections = kept

        taken = {id(r.connection) for r in self._requests if r.connection is not None}
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            chosen = None
            for connection in list(self._connections):
                if (
                    id(connection) in taken
                    or not connection.can_handle_request(origin)
                    or not connection.is_available()
                ):
                    continue
                if connection.has_expired():
                    self._connections.remove(connection)
                    closing.append(connection)
                    continue
                chosen = connection
                break
            if chosen is None:
                if len(self._connections) >= self._max_connections:
                    spare = next(
                        (c for c in self._connections if c.is_idle() and id(c) not in taken),
                        None,
                    )
                    if spare is None:
                        continue  # stays queued until a connection frees up
                    self._connections.remove(spare)
                    closing.append(spare)
                chosen = self.create_connection(origin)
                self._connections.append(chosen)
            pool_request.assign_to_connection(chosen)
            taken.add(id(chosen))
        return closing


def _use_fair_pool(client: httpx.AsyncClient) -> None:
    """Give the client's direct (not proxied) HTTP/1.1 transport a :class:`_FairPool`.

    Swapping the pool's class keeps every setting httpx gave it (TLS, limits, keep-alive
    expiry); the subclass adds no state. Anything unexpected (another httpx or httpcore
    version, a proxy, HTTP/2) keeps httpcore's own pool.
    """
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool and not getattr(pool, "_http2", True):
        pool.__class__ = _FairPool
