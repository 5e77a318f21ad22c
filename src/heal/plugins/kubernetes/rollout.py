"""Whether a workload's rollout is complete, with kubectl ``rollout status`` semantics.

Pure functions of the object as the API returns it: the ``wait`` step reads the object
and asks here, once per poll.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class RolloutFailed(Exception):
    """The rollout cannot complete (its progress deadline passed, or its strategy has no
    rollout to follow)."""


@dataclass(frozen=True, slots=True)
class Progress:
    done: bool
    message: str


def status(kind: str, obj: Mapping[str, Any]) -> Progress:
    return _VIEWERS[kind](obj)


def _deployment(obj: Mapping[str, Any]) -> Progress:
    name = obj["metadata"]["name"]
    spec, state = obj.get("spec", {}), obj.get("status", {})
    if obj["metadata"].get("generation", 0) > state.get("observedGeneration", 0):
        return Progress(False, "waiting for the deployment spec update to be observed")
    for condition in state.get("conditions") or []:
        progressing = condition.get("type") == "Progressing"
        if progressing and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"deployment {name!r} exceeded its progress deadline")
    wanted = spec.get("replicas")
    updated = state.get("updatedReplicas", 0)
    if wanted is not None and updated < wanted:
        return Progress(
            False,
            f"waiting for deployment {name!r} rollout to finish: "
            f"{updated} out of {wanted} new replicas have been updated",
        )
    replicas = state.get("replicas", 0)
    if replicas > updated:
        return Progress(
            False,
            f"waiting for deployment {name!r} rollout to finish: "
            f"{replicas - updated} old replicas are pending termination",
        )
    available = state.get("availableReplicas", 0)
    if available < updated:
        return Progress(
            False,
            f"waiting for deployment {name!r} rollout to finish: "
            f"{available} of {updated} updated replicas are available",
        )
    return Progress(True, f"deployment {name!r} successfully rolled out")


def _statefulset(obj: Mapping[str, Any]) -> Progress:
    spec, state = obj.get("spec", {}), obj.get("status", {})
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise RolloutFailed("rollout status is only available for the RollingUpdate strategy")
    observed = state.get("observedGeneration", 0)
    if observed == 0 or obj["metadata"].get("generation", 0) > observed:
        return Progress(False, "waiting for the statefulset spec update to be observed")
    wanted = spec.get("replicas")
    ready = state.get("readyReplicas", 0)
    if wanted is not None and ready < wanted:
        return Progress(False, f"waiting for {wanted - ready} pods to be ready")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if wanted is not None and partition:
        if state.get("updatedReplicas", 0) < wanted - partition:
            return Progress(
                False,
                f"waiting for partitioned roll out to finish: {state.get('updatedReplicas', 0)}"
                f" out of {wanted - partition} new pods have been updated",
            )
        return Progress(True, f"partitioned roll out complete: {wanted - partition} new pods")
    if state.get("updateRevision") != state.get("currentRevision"):
        return Progress(
            False,
            f"waiting for statefulset rolling update to complete: "
            f"{state.get('updatedReplicas', 0)} pods at revision {state.get('updateRevision')}",
        )
    return Progress(
        True,
        f"statefulset rolling update complete: {state.get('currentReplicas', 0)} pods "
        f"at revision {state.get('currentRevision')}",
    )


def _daemonset(obj: Mapping[str, Any]) -> Progress:
    name = obj["metadata"]["name"]
    spec, state = obj.get("spec", {}), obj.get("status", {})
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        raise RolloutFailed("rollout status is only available for the RollingUpdate strategy")
    if obj["metadata"].get("generation", 0) > state.get("observedGeneration", 0):
        return Progress(False, "waiting for the daemon set spec update to be observed")
    desired = state.get("desiredNumberScheduled", 0)
    updated = state.get("updatedNumberScheduled", 0)
    if updated < desired:
        return Progress(
            False,
            f"waiting for daemon set {name!r} rollout to finish: "
            f"{updated} out of {desired} new pods have been updated",
        )
    available = state.get("numberAvailable", 0)
    if available < desired:
        return Progress(
            False,
            f"waiting for daemon set {name!r} rollout to finish: "
            f"{available} of {desired} updated pods are available",
        )
    return Progress(True, f"daemon set {name!r} successfully rolled out")


_VIEWERS: dict[str, Callable[[Mapping[str, Any]], Progress]] = {
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
}
