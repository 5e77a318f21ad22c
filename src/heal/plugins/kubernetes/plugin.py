"""The ``kubernetes`` plugin: each action's dry_run, apply and wait steps, through lightkube.

One async client per cluster, built the first time a step needs it from the policy's
``kubernetes.clusters`` (rebuilt if a reload changed how the cluster is reached).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult, PluginContext
from heal.plugins.kubernetes import operations, rollout, workloads
from heal.plugins.kubernetes.workloads import Workload
from heal.policy.executors import KubernetesAction
from heal.policy.models import KubernetesCluster, Policy

FIELD_MANAGER = "heal"
_MESSAGE_LIMIT = 500
_DRY_RUN_UNSUPPORTED = "does not support dry run"
# Refusals that the same request cannot overcome by being sent again.
_PERMANENT = {400, 401, 403, 404, 405, 422}


class KubernetesPlugin:
    type = "kubernetes"

    def __init__(self, policy: Any) -> None:
        self._policy = policy
        self._clients: dict[str, tuple[KubernetesCluster, AsyncClient]] = {}

    @classmethod
    def from_context(cls, context: PluginContext) -> KubernetesPlugin:
        return cls(context.policy)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await _close(client)

    async def cancel(self, call: NodeCall) -> str | None:
        """A patch already sent cannot be taken back, and the wait is only looking."""
        return None

    async def run_node(self, call: NodeCall) -> NodeResult:
        config = call.config
        if not isinstance(config, KubernetesAction):
            raise TypeError(f"the kubernetes plugin runs kubernetes actions, not {config!r}")
        policy: Policy = self._policy()
        workload = workloads.target(config, call.context)
        inputs = {"cluster": config.cluster, "operation": config.operation, **workload.describe()}
        try:
            workloads.check_namespace(workload, policy.kubernetes.allowed_namespaces)
            client = await self._client(policy, config.cluster)
            async with asyncio.timeout(call.timeout):
                outputs = await self._step(call, client, workload, config)
        except NodeFailed as exc:
            raise NodeFailed(
                exc.message, inputs=inputs, outputs=exc.outputs, permanent=exc.permanent
            ) from exc
        except ApiError as exc:
            raise _refused(exc, workload, call.node.function, inputs) from exc
        except TimeoutError as exc:  # before OSError, of which it is one
            raise NodeFailed(
                f"{workload}: no answer from the API server within {call.timeout:g} s",
                inputs=inputs,
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise NodeFailed(
                f"{workload}: the API server could not be reached: {type(exc).__name__}: {exc}",
                inputs=inputs,
            ) from exc
        return NodeResult(inputs=inputs, outputs=outputs)

    async def _step(
        self, call: NodeCall, client: AsyncClient, workload: Workload, config: KubernetesAction
    ) -> dict[str, Any]:
        function = call.node.function
        learned: Mapping[str, Any] = call.context.get("outputs", {})
        if function == "dry_run":
            return await operations.plan(client, workload, config, call.context)
        if function == "apply":
            return await operations.apply(client, workload, learned)
        if function == "wait":
            return await _wait(client, workload, config, learned)
        raise TypeError(f"the kubernetes plugin has no step {function!r}")

    async def _client(self, policy: Policy, name: str) -> AsyncClient:
        cluster = policy.kubernetes.clusters.get(name)
        if cluster is None:
            raise NodeFailed(
                f"cluster {name!r} is not defined under kubernetes.clusters", permanent=True
            )
        known = self._clients.get(name)
        if known is not None and known[0] == cluster:
            return known[1]
        try:
            config = _config(cluster)
        except (ConfigError, OSError, KeyError, ValueError) as exc:
            raise NodeFailed(
                f"cluster {name!r}: its configuration cannot be used: {exc}", permanent=True
            ) from exc
        client = AsyncClient(config, field_manager=FIELD_MANAGER)
        self._clients[name] = (cluster, client)
        if known is not None:
            await _close(known[1])
        return client


async def _close(client: AsyncClient) -> None:
    close: Any = client.close  # untyped in lightkube
    await close()


def _config(cluster: KubernetesCluster) -> Any:
    if cluster.in_cluster:
        return KubeConfig.from_service_account()
    path = cluster.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return KubeConfig.from_file(os.path.expanduser(path)).get(cluster.context)


async def _wait(
    client: AsyncClient, workload: Workload, config: KubernetesAction, learned: Mapping[str, Any]
) -> dict[str, Any]:
    """One look at the rollout: done, still going, or failed (deadline, or our timeout)."""
    obj = await workloads.read(client, workload)
    try:
        progress = rollout.status(workload.kind, obj)
    except rollout.RolloutFailed as exc:
        raise NodeFailed(f"{workload}: {exc}", permanent=True) from exc
    if progress.done:
        revision = await workloads.revision(client, workload, obj)
        return {
            "done": True,
            "rollout": progress.message,
            "after": workloads.summary(obj, revision),
        }
    timeout = config.wait.timeout if config.wait else 0
    applied_at = learned.get("applied_at")
    if applied_at:
        waited = (operations.now() - datetime.fromisoformat(applied_at)).total_seconds()
        if waited > timeout:
            raise NodeFailed(
                f"{workload}: the rollout did not complete within {timeout} s: {progress.message}",
                outputs={"rollout": progress.message},
                permanent=True,
            )
    return {"done": False, "rollout": progress.message}


def _refused(
    exc: ApiError, workload: Workload, function: str, inputs: dict[str, Any]
) -> NodeFailed:
    """The API's refusal, naming the object and the reason; permanent unless a retry can help."""
    code = exc.status.code or 0
    reason = (exc.status.message or exc.status.reason or f"HTTP {code}")[:_MESSAGE_LIMIT]
    if _DRY_RUN_UNSUPPORTED in reason:
        return NodeFailed(
            f"{workload}: cannot be dry-run: {reason} (the webhook does not declare "
            "sideEffects None or NoneOnDryRun); nothing was applied",
            inputs=inputs,
            permanent=True,
        )
    what = {404: "not found", 403: "forbidden", 401: "unauthorized", 422: "invalid"}.get(
        code, f"refused (HTTP {code})"
    )
    if function == "dry_run":
        step = "dry run refused"
        tail = "; nothing was applied"
    elif function == "apply":
        step, tail = "refused", ""
    else:
        step, tail = "rollout status unavailable", ""
    return NodeFailed(
        f"{workload}: {step}: {what}: {reason}{tail}",
        inputs=inputs,
        permanent=code in _PERMANENT,
    )
