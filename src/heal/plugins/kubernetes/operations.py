"""restart, scale and rollback as a planned request: worked out and dry-run first, then sent.

``plan`` reads the workload, works out the one request the operation needs (kubectl's
semantics), has the server dry-run it and returns it in the step's outputs; ``apply``
sends exactly that request again, for real. Re-sent after a crash it is the same request:
the same restartedAt value (no second restart), the same replica count, the same
revision's template (never the revision before that).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.types import PatchType

from heal.engine.interfaces import NodeFailed
from heal.plugins.kubernetes import workloads
from heal.plugins.kubernetes.workloads import Workload
from heal.policy.executors import KubernetesAction
from heal.policy.expressions import ExpressionError, render

_PATCH_TYPES = {"strategic": PatchType.STRATEGIC, "merge": PatchType.MERGE, "json": PatchType.JSON}
# Annotations a rollback keeps from the Deployment rather than restore from the revision
# (kubectl's annotationsToSkip).
_KEPT_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    workloads.REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
)


def now() -> datetime:
    return datetime.now(UTC)


def digest(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


async def send(
    client: AsyncClient, workload: Workload, request: Mapping[str, Any], *, dry_run: bool
) -> dict[str, Any]:
    resource = workload.scale if request["subresource"] == "scale" else workload.resource
    answer = await client.patch(
        resource,
        workload.name,
        request["body"],
        namespace=workload.namespace,
        patch_type=_PATCH_TYPES[request["patch_type"]],
        dry_run=dry_run,
    )
    return workloads.as_dict(answer)


def _request(patch_type: str, body: Any, subresource: str | None = None) -> dict[str, Any]:
    return {"patch_type": patch_type, "subresource": subresource, "body": body}


async def plan(
    client: AsyncClient,
    workload: Workload,
    config: KubernetesAction,
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """The dry_run step: the request, accepted by the server's dry run, and the before."""
    obj = await workloads.read(client, workload)
    revision = await workloads.revision(client, workload, obj)
    outputs: dict[str, Any] = {
        "workload": str(workload),
        "before": workloads.summary(obj, revision),
    }
    if config.operation == "restart":
        _refuse_paused(workload, obj, "restarting")
        outputs.update(_restart())
    elif config.operation == "scale":
        outputs.update(await _scale(client, workload, config, context, outputs))
    else:
        _refuse_paused(workload, obj, "rolling back")
        outputs.update(await _rollback(client, workload, obj, revision, config.to_revision))
    if outputs.get("nothing_to_do"):
        return outputs
    request = outputs["request"]
    await send(client, workload, request, dry_run=True)
    outputs["request_digest"] = digest(request)
    outputs["dry_run"] = "accepted by the server"
    return outputs


def _refuse_paused(workload: Workload, obj: Mapping[str, Any], doing: str) -> None:
    if workload.kind == "Deployment" and obj.get("spec", {}).get("paused"):
        raise NodeFailed(
            f"{workload} is paused: resume it (kubectl rollout resume) before {doing}; "
            "nothing was applied",
            permanent=True,
        )


def _restart() -> dict[str, Any]:
    """kubectl's restart: a new restartedAt annotation on the pod template. The value is
    chosen here, once, so an apply re-sent after a crash sets the same one (no change)."""
    restarted_at = now().strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "spec": {"template": {"metadata": {"annotations": {workloads.RESTARTED_AT: restarted_at}}}}
    }
    return {"restarted_at": restarted_at, "request": _request("strategic", body)}


async def _scale(
    client: AsyncClient,
    workload: Workload,
    config: KubernetesAction,
    context: Mapping[str, Any],
    learned: dict[str, Any],
) -> dict[str, Any]:
    scale = workloads.as_dict(
        await client.get(workload.scale, workload.name, namespace=workload.namespace)
    )
    current = int(scale.get("spec", {}).get("replicas", 0))
    learned["current_replicas"] = current
    wanted = _replicas(config, context, current, learned)
    bounds = config.bounds
    assert bounds is not None  # the config model requires bounds for a scale
    if not bounds.min <= wanted <= bounds.max:
        raise NodeFailed(
            f"{workload}: replicas {wanted} is outside the bounds {bounds.min}-{bounds.max}; "
            "nothing was applied",
            outputs=learned,
            permanent=True,
        )
    body = {"spec": {"replicas": wanted}}
    return {
        "current_replicas": current,
        "replicas": wanted,
        "request": _request("merge", body, "scale"),
    }


def _replicas(
    config: KubernetesAction, context: Mapping[str, Any], current: int, learned: dict[str, Any]
) -> int:
    """The rendered count; the template sees outputs.current_replicas, the count before."""
    if isinstance(config.replicas, int):
        return config.replicas
    assert config.replicas is not None
    outputs = {**context.get("outputs", {}), "current_replicas": current}
    try:
        text = render(config.replicas, {**context, "outputs": outputs}).strip()
    except ExpressionError as exc:
        raise NodeFailed(f"bad input: {exc}", outputs=learned, permanent=True) from exc
    try:
        return int(text)
    except ValueError:
        raise NodeFailed(
            f"bad input: replicas rendered to {text!r}, not a whole number",
            outputs=learned,
            permanent=True,
        ) from None


async def _rollback(
    client: AsyncClient,
    workload: Workload,
    obj: dict[str, Any],
    current: int | None,
    to_revision: int | None,
) -> dict[str, Any]:
    if workload.kind == "Deployment":
        return await _rollback_deployment(client, workload, obj, current, to_revision)
    return await _rollback_history(client, workload, obj, current, to_revision)


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    copied = json.loads(json.dumps(template))
    labels = copied.get("metadata", {}).get("labels")
    if labels:
        labels.pop(workloads.POD_TEMPLATE_HASH, None)
    return dict(copied)


def _skipped(revision: int, current: int | None) -> dict[str, Any]:
    return {
        "from_revision": current,
        "to_revision": revision,
        "nothing_to_do": True,
        "result": f"skipped rollback (current template already matches revision {revision})",
    }


def _revision_to_restore(
    workload: Workload,
    history: list[tuple[int, dict[str, Any]]],
    to_revision: int | None,
    missing: str,
) -> tuple[int, dict[str, Any]]:
    """As kubectl rollout undo picks it: ``to_revision``, or the one before the newest."""
    known = sorted(history, key=lambda pair: pair[0])
    if to_revision is None:
        if len(known) < 2:
            raise NodeFailed(f"{workload}: {missing}", permanent=True)
        return known[-2]
    for revision, found in known:
        if revision == to_revision:
            return revision, found
    have = ", ".join(str(revision) for revision, _ in known) or "none"
    raise NodeFailed(
        f"{workload}: unable to find revision {to_revision} in its history (revisions: {have})",
        permanent=True,
    )


async def _rollback_deployment(
    client: AsyncClient,
    workload: Workload,
    deployment: dict[str, Any],
    current: int | None,
    to_revision: int | None,
) -> dict[str, Any]:
    """kubectl rollout undo: the ReplicaSet of the wanted revision (default: the one before
    the newest), its template without pod-template-hash, its annotations restored."""
    sets = [
        (workloads.rs_revision(rs), rs) for rs in await workloads.replica_sets(client, deployment)
    ]
    known = [(rev, rs) for rev, rs in sets if rev is not None]
    missing = "no rollout history found (no revision before the current one)"
    revision, chosen = _revision_to_restore(workload, known, to_revision, missing)
    template = _without_hash(chosen["spec"]["template"])
    if template == _without_hash(deployment["spec"]["template"]):
        return _skipped(revision, current)
    own = deployment["metadata"].get("annotations") or {}
    annotations = {k: own[k] for k in _KEPT_ANNOTATIONS if k in own}
    for key, value in (chosen["metadata"].get("annotations") or {}).items():
        if key not in _KEPT_ANNOTATIONS:
            annotations[key] = value
    body = [
        {"op": "replace", "path": "/spec/template", "value": template},
        # add, not kubectl's replace: the same where annotations exist, and it also works
        # on a Deployment that has none yet.
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ]
    return {
        "from_revision": current,
        "to_revision": revision,
        "replica_set": chosen["metadata"]["name"],
        "request": _request("json", body),
    }


async def _rollback_history(
    client: AsyncClient,
    workload: Workload,
    obj: dict[str, Any],
    current: int | None,
    to_revision: int | None,
) -> dict[str, Any]:
    """StatefulSet and DaemonSet: the ControllerRevision's data is the patch that restores
    its template (``$patch: replace``); kubectl sends it as it is."""
    history = [
        (int(r.get("revision", 0)), r) for r in await workloads.controller_revisions(client, obj)
    ]
    missing = "no last revision to roll back to"
    revision, chosen = _revision_to_restore(workload, history, to_revision, missing)
    data = chosen.get("data") or {}
    wanted = dict(data.get("spec", {}).get("template", {}))
    wanted.pop("$patch", None)
    if wanted == obj["spec"]["template"]:
        return _skipped(revision, current)
    return {
        "from_revision": current,
        "to_revision": revision,
        "controller_revision": chosen["metadata"]["name"],
        "request": _request("strategic", data),
    }


async def apply(
    client: AsyncClient, workload: Workload, learned: Mapping[str, Any]
) -> dict[str, Any]:
    """The apply step: the dry run's request, sent for real (the same one, if re-sent)."""
    if learned.get("nothing_to_do"):
        # The wait that follows still looks, and times out from now.
        return {
            "applied": False,
            "applied_at": now().isoformat(),
            "result": learned.get("result", "nothing to do"),
        }
    request = learned.get("request")
    if not isinstance(request, Mapping) or digest(request) != learned.get("request_digest"):
        # The stored request is not the one dry-run (e.g. a secret's value in it was
        # redacted when it was stored): sending it could apply something else.
        raise NodeFailed(
            f"{workload}: the dry run's request was not stored intact; nothing was applied",
            permanent=True,
        )
    answer = await send(client, workload, request, dry_run=False)
    applied_at = now().isoformat()
    if request["subresource"] == "scale":
        answer = await workloads.read(client, workload)
    return {
        "applied": True,
        "applied_at": applied_at,
        "result": _done(workload, learned),
        "after": workloads.summary(answer, await workloads.revision(client, workload, answer)),
    }


def _done(workload: Workload, learned: Mapping[str, Any]) -> str:
    if "restarted_at" in learned:
        return f"{workload} restarted (restartedAt {learned['restarted_at']})"
    if "replicas" in learned:
        return f"{workload} scaled from {learned['current_replicas']} to {learned['replicas']}"
    return f"{workload} rolled back to revision {learned['to_revision']}"
