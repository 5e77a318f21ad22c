"""The workload an action targets: which one, whether heal may touch it, what it looks like.

Names come from templates over an alert's labels, so they are checked against the
API's own naming rules and the policy's allowed namespaces before any request is made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import (
    ControllerRevision,
    DaemonSet,
    Deployment,
    ReplicaSet,
    StatefulSet,
)

from heal.domain.matchers import LabelMatcher
from heal.engine.interfaces import NodeFailed
from heal.policy.executors import KubernetesAction
from heal.policy.expressions import ExpressionError, render

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
POD_TEMPLATE_HASH = "pod-template-hash"
NEVER_ALLOWED = "kube-system"

# RFC 1123, as the API server checks them: a namespace is a label, a workload a subdomain.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_RESOURCES: dict[str, Any] = {
    "Deployment": Deployment,
    "StatefulSet": StatefulSet,
    "DaemonSet": DaemonSet,
}


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def resource(self) -> Any:
        return _RESOURCES[self.kind]

    @property
    def scale(self) -> Any:
        return self.resource.Scale

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


def target(config: KubernetesAction, context: Mapping[str, Any]) -> Workload:
    """The rendered target; a bad name is a permanent refusal (the alert will not change)."""
    try:
        namespace = render(config.target.namespace, context).strip()
        name = render(config.target.name, context).strip()
    except ExpressionError as exc:
        raise NodeFailed(f"bad input: {exc}", permanent=True) from exc
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise NodeFailed(f"bad input: namespace {namespace!r} is not a valid name", permanent=True)
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise NodeFailed(
            f"bad input: {config.target.kind} name {name!r} is not a valid name", permanent=True
        )
    return Workload(config.target.kind, namespace, name)


def check_namespace(workload: Workload, allowed: Sequence[str]) -> None:
    """Refuse a namespace the policy does not allow (kube-system never), before any request."""
    if workload.namespace == NEVER_ALLOWED:
        raise NodeFailed(
            f"{workload}: namespace kube-system is never allowed; nothing was sent",
            permanent=True,
        )
    labels = {"namespace": workload.namespace}
    if not any(LabelMatcher.parse("namespace", spec).matches(labels) for spec in allowed):
        shown = ", ".join(allowed) or "none"
        raise NodeFailed(
            f"{workload}: namespace {workload.namespace!r} is not in "
            f"kubernetes.allowed_namespaces ({shown}); nothing was sent",
            permanent=True,
        )


def as_dict(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.to_dict()
    return data


async def read(client: AsyncClient, workload: Workload) -> dict[str, Any]:
    return as_dict(await client.get(workload.resource, workload.name, namespace=workload.namespace))


def owned_by(item: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Controlled by ``owner`` (its ownerReference with controller: true), as kubectl checks."""
    uid = owner["metadata"]["uid"]
    references = item.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("controller") and ref.get("uid") == uid for ref in references)


async def _owned(client: AsyncClient, resource: Any, owner: dict[str, Any]) -> list[dict[str, Any]]:
    selector = owner.get("spec", {}).get("selector") or {}
    # Only matchLabels narrows the list server-side; ownership is what decides either way.
    labels = selector.get("matchLabels") if not selector.get("matchExpressions") else None
    namespace = owner["metadata"]["namespace"]
    items = [
        as_dict(item) async for item in client.list(resource, namespace=namespace, labels=labels)
    ]
    return [item for item in items if owned_by(item, owner)]


async def replica_sets(client: AsyncClient, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return await _owned(client, ReplicaSet, deployment)


async def controller_revisions(client: AsyncClient, owner: dict[str, Any]) -> list[dict[str, Any]]:
    return await _owned(client, ControllerRevision, owner)


def rs_revision(rs: Mapping[str, Any]) -> int | None:
    value = (rs.get("metadata", {}).get("annotations") or {}).get(REVISION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def revision(client: AsyncClient, workload: Workload, obj: dict[str, Any]) -> int | None:
    """The workload's current revision: a Deployment's annotation; for the others, the
    newest of their ControllerRevisions."""
    if workload.kind == "Deployment":
        return rs_revision(obj)
    revisions = [r.get("revision", 0) for r in await controller_revisions(client, obj)]
    return max(revisions) if revisions else None


def summary(obj: Mapping[str, Any], revision: int | None) -> dict[str, Any]:
    """What the timeline shows of a workload before and after: images, replicas, revision."""
    spec = obj.get("spec", {})
    status = obj.get("status", {})
    template = spec.get("template", {})
    containers = template.get("spec", {}).get("containers", [])
    shown: dict[str, Any] = {
        "images": {c["name"]: c.get("image") for c in containers},
        "revision": revision,
        "generation": obj.get("metadata", {}).get("generation"),
    }
    if "replicas" in spec:
        shown["replicas"] = spec["replicas"]
        shown["ready_replicas"] = status.get("readyReplicas", 0)
    else:  # a DaemonSet: one pod per node it is scheduled to
        shown["desired_pods"] = status.get("desiredNumberScheduled", 0)
        shown["ready_pods"] = status.get("numberReady", 0)
    restarted = (template.get("metadata", {}).get("annotations") or {}).get(RESTARTED_AT)
    if restarted:
        shown["restarted_at"] = restarted
    return shown
