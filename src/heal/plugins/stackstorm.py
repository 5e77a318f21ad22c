"""The ``stackstorm`` plugin: run a StackStorm action, then follow its execution.

Two steps (``StackStormAction.steps``): ``execute`` picks the st2 action by keyword and
POSTs ``/executions``; ``follow`` polls ``GET /executions/{id}`` until st2 says it ended.

A crash between the POST and the commit of the execution id must not start the st2
action twice, so every POST carries heal's marker in the ``st2-context`` header (st2
merges that JSON object into the execution's ``context``), and ``execute`` first looks
for an execution bearing this action's marker among the newest executions of the same
st2 action (``GET /executions?action=<ref>``; st2 has no filter on context, so the match
is made here). Found: it is adopted, not posted again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult, PluginContext
from heal.policy.executors import StackStormAction
from heal.policy.expressions import ExpressionError, render, render_structure

# st2's statuses (st2common.constants.action): the ones that end an execution badly,
# and the ones it is still on its way in. ``pending``: a workflow waits on an inquiry.
FAILED = frozenset({"failed", "timeout", "canceled", "abandoned"})
UNDERWAY = frozenset(
    {"requested", "scheduled", "running", "delayed", "canceling", "pausing", "paused", "resuming"}
)
SUCCEEDED = "succeeded"
PENDING = "pending"
INQUIRY = "waiting on an st2 inquiry"
# st2's own page size cap for non-admin users (api.max_page_size).
LOOKUP_LIMIT = 100
_LOOKUP_FIELDS = "id,status,context,web_url"
_MESSAGE_LIMIT = 500
_RESULT_LIMIT = 4000
_AUTH_HEADERS = {"api_key": "St2-Api-Key", "auth_token": "X-Auth-Token"}
_AUTH_NAMES = {"api_key": "API key", "auth_token": "auth token"}


class StackStormPlugin:
    type = "stackstorm"

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        # One client per TLS verification setting: httpx fixes ``verify`` per client.
        self._clients: dict[bool, httpx.AsyncClient] = {}

    @classmethod
    def from_context(cls, context: PluginContext) -> StackStormPlugin:
        return cls()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _client(self, verify: bool) -> httpx.AsyncClient:
        client = self._clients.get(verify)
        if client is None:
            client = httpx.AsyncClient(
                verify=verify, follow_redirects=False, transport=self._transport
            )
            self._clients[verify] = client
        return client

    async def run_node(self, call: NodeCall) -> NodeResult:
        config = _config(call)
        api = self._api(config, call)
        if call.node.function == "execute":
            return await _execute(api, config, call)
        if call.node.function == "follow":
            return await _follow(api, call)
        raise TypeError(f"the stackstorm plugin has no step {call.node.function!r}")

    async def cancel(self, call: NodeCall) -> str | None:
        """DELETE the execution this action started (found by its marker if heal died
        before it stored the id)."""
        config = _config(call)
        try:
            api = self._api(config, call)
            execution_id = _outputs(call).get("execution_id")
            if not execution_id:
                found = await _find_started(api, _choose(config, call.context)[0], call)
                if found is None:
                    return None
                execution_id = found["id"]
            body = await api.call("DELETE", f"/executions/{execution_id}")
        except NodeFailed as exc:
            return f"st2 execution not cancelled: {exc.message}"
        if isinstance(body, dict) and body.get("faultstring"):
            # st2 answers 200 with a faultstring when the execution already ended.
            return f"st2 execution {execution_id} not cancelled: {body['faultstring']}"
        return f"st2 execution {execution_id} cancelled"

    def _api(self, config: StackStormAction, call: NodeCall) -> _Api:
        try:
            base_url = render(config.base_url, call.context).rstrip("/")
        except ExpressionError as exc:
            raise NodeFailed(f"bad input: {exc}", permanent=True) from exc
        secret = call.secrets.get(config.auth.secret)
        if not secret:
            raise NodeFailed(
                f"secret {config.auth.secret!r} for the st2 {_AUTH_NAMES[config.auth.type]} "
                "is not set",
                permanent=True,
            )
        return _Api(
            self._client(config.verify_ssl),
            base_url,
            {_AUTH_HEADERS[config.auth.type]: secret},
            _AUTH_NAMES[config.auth.type],
            min(config.request_timeout, call.timeout),
        )


class _Api:
    """One st2 API, its credentials and timeout; answers turned into clear failures."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        headers: dict[str, str],
        credential: str,
        timeout: float,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.headers = headers
        self.credential = credential
        self.timeout = timeout

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        not_found: str | None = None,
    ) -> Any:
        where = f"st2 {method} {path}"
        try:
            response = await self.client.request(
                method,
                self.base_url + path,
                params=params,
                json=body,
                headers={**self.headers, **(headers or {})},
                timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            raise NodeFailed(f"{where}: no answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise NodeFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
        data = _json(response)
        if response.is_success:
            return data
        fault = _faultstring(data, response)
        status = response.status_code
        if status == 401:
            raise NodeFailed(
                f"st2 refused the {self.credential} ({status}: {fault})", permanent=True
            )
        if status == 403:
            raise NodeFailed(f"st2 forbids {method} {path} ({status}: {fault})", permanent=True)
        if status == 404 or (status == 400 and "cannot be found" in fault):
            # st2 answers an unknown action ref with 400 'Action "x" cannot be found.'
            missing = not_found or f"{where}: not found"
            raise NodeFailed(f"{missing} ({status}: {fault})", permanent=True)
        if 400 <= status < 500 and status not in (408, 429):
            raise NodeFailed(f"{where} was refused ({status}: {fault})", permanent=True)
        raise NodeFailed(f"{where} answered HTTP {status}: {fault}")


def _config(call: NodeCall) -> StackStormAction:
    if not isinstance(call.config, StackStormAction):
        raise TypeError(f"the stackstorm plugin runs stackstorm actions, not {call.config!r}")
    return call.config


def _outputs(call: NodeCall) -> Mapping[str, Any]:
    outputs = call.context.get("outputs")
    return outputs if isinstance(outputs, Mapping) else {}


def _choose(config: StackStormAction, context: Mapping[str, Any]) -> tuple[str, str | None]:
    """The st2 action ref, and the keyword that chose it (None: the default action)."""
    try:
        text = render(config.match_on, context)
    except ExpressionError as exc:
        raise NodeFailed(f"bad input: {exc}", permanent=True) from exc
    folded = text.casefold()
    for keyword, ref in config.action_map.items():  # file order: the first match wins
        if keyword.casefold() in folded:
            return ref, keyword
    if config.default_action is not None:
        return config.default_action, None
    keywords = ", ".join(repr(k) for k in config.action_map)
    raise NodeFailed(
        f"no st2 action matched {text[:_MESSAGE_LIMIT]!r} (keywords {keywords}) "
        "and there is no default_action",
        permanent=True,
    )


def _marker(call: NodeCall) -> dict[str, Any]:
    """What heal puts in the execution's context: who started it, and for which run."""
    action = call.context.get("action", {})
    incident = call.context.get("incident", {})
    return {
        "heal": {
            "action_id": call.action_id,
            "action": action.get("name"),
            "rule": action.get("rule"),
            "incident_id": incident.get("id"),
            "idempotency_key": call.idempotency_key,
        }
    }


def _is_ours(execution: Any, call: NodeCall) -> bool:
    """Started by this heal action's execute step (any attempt: a retry after a lost
    answer must adopt the execution the earlier attempt started, too)."""
    if not isinstance(execution, dict):
        return False
    context = execution.get("context")
    heal = context.get("heal") if isinstance(context, dict) else None
    if not isinstance(heal, dict):
        return False
    ours = _marker(call)["heal"]
    key = str(heal.get("idempotency_key", ""))
    return (
        heal.get("action_id") == ours["action_id"]
        and heal.get("action") == ours["action"]
        and heal.get("incident_id") == ours["incident_id"]
        and key.startswith(f"heal-{call.action_id}-execute-")
    )


async def _find_started(api: _Api, ref: str, call: NodeCall) -> dict[str, Any] | None:
    executions = await api.call(
        "GET",
        "/executions",
        params={"action": ref, "limit": LOOKUP_LIMIT, "include_attributes": _LOOKUP_FIELDS},
    )
    if not isinstance(executions, list):
        raise NodeFailed("st2 GET /executions answered with something that is not a list")
    return next((e for e in executions if _is_ours(e, call)), None)


async def _execute(api: _Api, config: StackStormAction, call: NodeCall) -> NodeResult:
    ref, keyword = _choose(config, call.context)
    try:
        parameters = render_structure(config.parameters, call.context)
    except ExpressionError as exc:
        raise NodeFailed(f"bad input: {exc}", permanent=True) from exc
    inputs: dict[str, Any] = {"action": ref, "parameters": parameters}
    inputs["matched"] = keyword if keyword is not None else "(default_action)"
    try:
        execution = await _find_started(api, ref, call)
        adopted = execution is not None
        if execution is None:
            execution = await api.call(
                "POST",
                "/executions",
                body={"action": ref, "parameters": parameters},
                headers={"st2-context": json.dumps(_marker(call))},
                not_found=f"st2 action {ref} not found",
            )
    except NodeFailed as exc:
        exc.inputs = inputs
        raise
    if not isinstance(execution, dict) or not execution.get("id"):
        raise NodeFailed("st2 POST /executions answered without an execution id", inputs=inputs)
    outputs: dict[str, Any] = {
        "execution_id": str(execution["id"]),
        "web_url": execution.get("web_url"),
        "st2_action": ref,
        "status": execution.get("status"),
    }
    if adopted:
        outputs["adopted"] = True  # started by an earlier run of this step; not posted again
    return NodeResult(inputs=inputs, outputs=outputs)


async def _follow(api: _Api, call: NodeCall) -> NodeResult:
    execution_id = _outputs(call).get("execution_id")
    if not execution_id:
        raise NodeFailed("no st2 execution id was stored by the execute step", permanent=True)
    execution = await api.call(
        "GET",
        f"/executions/{execution_id}",
        not_found=f"st2 execution {execution_id} not found",
    )
    if not isinstance(execution, dict):
        raise NodeFailed(f"st2 GET /executions/{execution_id} answered with no execution")
    status = str(execution.get("status") or "")
    outputs: dict[str, Any] = {"execution_id": execution_id, "status": status}
    if status == SUCCEEDED:
        outputs.update(done=True, state="st2 execution succeeded")
        outputs["result"] = _summary(execution.get("result"))
        return NodeResult(outputs=outputs)
    if status in FAILED:
        outputs.update(done=True, state=f"st2 execution {status}")
        outputs["result"] = _summary(execution.get("result"))
        # Permanent: a retry would only look at the same ended execution again.
        raise NodeFailed(
            f"st2 execution {execution_id} {status}: {_error_of(execution)}",
            outputs=outputs,
            permanent=True,
        )
    state = INQUIRY if status == PENDING else f"st2 execution {status or 'has no status'}"
    outputs.update(done=False, state=state)
    return NodeResult(outputs=outputs)


def _error_of(execution: dict[str, Any]) -> str:
    """Where st2's runners put what went wrong: ``error`` (python, timeouts), ``errors``
    (orquesta), else stderr, else the exit code."""
    result = execution.get("result")
    if isinstance(result, str) and result.strip():
        return _clip(result.strip())
    if not isinstance(result, dict):
        return "st2 gave no error"
    if result.get("error"):
        error = result["error"]
        return _clip(error if isinstance(error, str) else json.dumps(error, default=str))
    errors = result.get("errors")
    if isinstance(errors, list) and errors:
        texts = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        return _clip("; ".join(texts))
    stderr = result.get("stderr")
    if isinstance(stderr, str) and stderr.strip():
        return _clip(stderr.strip(), tail=True)
    for key in ("exit_code", "return_code"):
        if result.get(key) not in (None, 0):
            return f"{key.replace('_', ' ')} {result[key]}"
    return "st2 gave no error"


def _summary(result: Any) -> Any:
    """The execution's result for the timeline, kept small."""
    text = json.dumps(result, default=str)
    if len(text) <= _RESULT_LIMIT:
        return result
    return {"truncated": text[:_RESULT_LIMIT]}


def _clip(text: str, *, tail: bool = False) -> str:
    if len(text) <= _MESSAGE_LIMIT:
        return text
    return "…" + text[-_MESSAGE_LIMIT:] if tail else text[:_MESSAGE_LIMIT] + "…"


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _faultstring(data: Any, response: httpx.Response) -> str:
    if isinstance(data, dict) and data.get("faultstring"):
        return _clip(str(data["faultstring"]))
    text = response.text.strip()
    return _clip(text) if text else response.reason_phrase
