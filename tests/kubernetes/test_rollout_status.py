"""kubectl rollout status semantics, for the cases a live cluster is slow to show."""

from __future__ import annotations

from typing import Any

import pytest

from heal.plugins.kubernetes.rollout import RolloutFailed, status


def _obj(spec: dict[str, Any], state: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": generation}, "spec": spec, "status": state}


DONE = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}


@pytest.mark.parametrize(
    ("state", "done", "message"),
    [
        ({**DONE, "observedGeneration": 1}, False, "spec update to be observed"),
        ({**DONE, "updatedReplicas": 1}, False, "1 out of 3 new replicas have been updated"),
        ({**DONE, "replicas": 4}, False, "1 old replicas are pending termination"),
        ({**DONE, "availableReplicas": 2}, False, "2 of 3 updated replicas are available"),
        (DONE, True, "successfully rolled out"),
    ],
)
def test_a_deployment_is_done_when_every_replica_is_updated_and_available(
    state: dict[str, Any], done: bool, message: str
) -> None:
    progress = status("Deployment", _obj({"replicas": 3}, state))
    assert progress.done is done
    assert message in progress.message


def test_a_deployment_past_its_progress_deadline_fails() -> None:
    stuck = {
        **DONE,
        "updatedReplicas": 1,
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    }
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        status("Deployment", _obj({"replicas": 3}, stuck))


def test_a_statefulset_with_a_partition_is_done_when_the_partition_is_updated() -> None:
    spec = {
        "replicas": 4,
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
    }
    state = {"observedGeneration": 2, "readyReplicas": 4, "updatedReplicas": 1}
    assert not status("StatefulSet", _obj(spec, state)).done
    assert status("StatefulSet", _obj(spec, {**state, "updatedReplicas": 2})).done


def test_a_statefulset_waits_for_its_update_revision_to_be_current() -> None:
    state = {
        "observedGeneration": 2,
        "readyReplicas": 2,
        "currentRevision": "a",
        "updateRevision": "b",
    }
    assert not status("StatefulSet", _obj({"replicas": 2}, state)).done
    assert status("StatefulSet", _obj({"replicas": 2}, {**state, "currentRevision": "b"})).done


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_an_on_delete_strategy_has_no_rollout_to_follow(kind: str) -> None:
    with pytest.raises(RolloutFailed, match="only available for the RollingUpdate strategy"):
        status(kind, _obj({"updateStrategy": {"type": "OnDelete"}}, {"observedGeneration": 2}))


def test_a_daemonset_is_done_when_every_scheduled_pod_is_updated_and_available() -> None:
    state = {"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3}
    assert (
        "2 of 3 updated pods"
        in status("DaemonSet", _obj({}, {**state, "numberAvailable": 2})).message
    )
    assert status("DaemonSet", _obj({}, {**state, "numberAvailable": 3})).done
