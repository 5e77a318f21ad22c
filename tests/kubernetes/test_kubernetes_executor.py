"""The kubernetes action type end to end: a policy, an alert, the real plugin, and a real
kube-apiserver with its controllers (k8s_cluster). heal acts as the ``heal`` user, who
has exactly the RBAC rules docs/executors.md gives.

The controllers need real time to roll workloads out, so actions are driven with the
engine's own clock: each wake when it is due, sleeping in between (polls every 0.5 s).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import HealFactory
from helpers import alert, heal_dies_before_commit
from k8s_cluster import (
    Cluster,
    WebhookConfiguration,
    build,
    cluster,
    deployment,
    get,
    namespace,
    pod_template,
    rolled_out,
    set_image,
)
from lightkube import Client
from lightkube.resources.apps_v1 import (
    ControllerRevision,
    DaemonSet,
    Deployment,
    ReplicaSet,
    StatefulSet,
)
from lightkube.resources.core_v1 import ResourceQuota
from lightkube.types import PatchType

from heal.app import Heal
from heal.domain.actions import ActionStatus
from heal.store import actions_repo, timeline_repo

__all__ = ["cluster"]  # the session's cluster fixture, used by name below


@pytest.fixture
def backend(sqlite_url: str) -> tuple[str, str]:
    """The plugin is what is tested here: one database backend is enough."""
    return sqlite_url, "embedded"


@pytest.fixture(scope="session")
def admin(cluster: Cluster) -> Client:
    """The tests' own view of the cluster (lightkube's sync client has nothing to close)."""
    return cluster.admin()


POLICY = """
kubernetes:
  clusters:
    default: {kubeconfig: HEAL_KUBECONFIG}
    readonly: {kubeconfig: READONLY_KUBECONFIG}
    nowhere: {kubeconfig: /nonexistent/kubeconfig}
  allowed_namespaces: ["=~t-.*", "kube-system"]
actions:
  the-action:
ACTION
rules:
  - name: workload-down
    match: {alertname: WorkloadDown}
    actions: [{action: the-action}]
"""


def _policy(cluster: Cluster, action: str) -> str:
    indented = "\n".join(f"    {line}" for line in action.strip().splitlines())
    return (
        POLICY.replace("HEAL_KUBECONFIG", str(cluster.heal_kubeconfig))
        .replace("READONLY_KUBECONFIG", str(cluster.readonly_kubeconfig))
        .replace("ACTION", indented)
    )


async def _start(make_heal: HealFactory, cluster: Cluster, action: str, **labels: str) -> Heal:
    heal: Heal = await make_heal(_policy(cluster, action))
    report = await heal.ingest.ingest([alert("WorkloadDown", **labels)])
    assert report.actions_created == 1
    return heal


async def _row(heal: Heal, action_id: int = 1) -> dict[str, Any]:
    async with heal.db.read() as connection:
        row = await actions_repo.load(connection, action_id)
    assert row is not None
    return row


async def _wake_once(heal: Heal, action_id: int = 1) -> dict[str, Any]:
    """One wake, when it is due (in real time)."""
    row = await _row(heal, action_id)
    delay = (row["next_wake_at"] - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)
    await heal.engine.wake(action_id, row["version"])
    return await _row(heal, action_id)


async def _run(heal: Heal, action_id: int = 1, max_wakes: int = 200) -> dict[str, Any]:
    for _ in range(max_wakes):
        row = await _row(heal, action_id)
        if ActionStatus(row["status"]).is_terminal:
            return row
        await _wake_once(heal, action_id)
    raise AssertionError(f"action {action_id} not finished after {max_wakes} wakes")


async def _timeline(heal: Heal, action_id: int = 1) -> list[dict[str, Any]]:
    async with heal.db.read() as connection:
        return await timeline_repo.for_action(connection, action_id)


def _finished(entries: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "node.finished" and e["data"].get("node") == node]


def _owned_replica_sets(admin: Client, ns: str) -> list[dict[str, Any]]:
    return [get_dict(rs) for rs in admin.list(ReplicaSet, namespace=ns)]


def get_dict(obj: Any) -> dict[str, Any]:
    found: dict[str, Any] = obj.to_dict()
    return found


def _images(obj: dict[str, Any]) -> list[str]:
    return [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]


RESTART = """
type: kubernetes
operation: restart
target:
  kind: Deployment
  namespace: "{{ alert.labels.namespace }}"
  name: "{{ alert.labels.deployment }}"
wait: {timeout: 60, interval: 0.5}
"""


# -- restart --------------------------------------------------------------------------------
async def test_restart_sets_the_annotation_rolls_out_a_new_replica_set_and_waits(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout")
    before = await rolled_out(admin, Deployment, ns, "checkout")
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    after = get(admin, Deployment, ns, "checkout")
    annotation = after["spec"]["template"]["metadata"]["annotations"]
    assert annotation["kubectl.kubernetes.io/restartedAt"] == row["outputs"]["restarted_at"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert len(_owned_replica_sets(admin, ns)) == 2  # the old one and the restarted one
    entries = await _timeline(heal)
    dry_run, apply, wait = (_finished(entries, n)[0] for n in ("dry_run", "apply", "wait"))
    assert dry_run["data"]["outputs"]["before"]["revision"] == 1
    assert dry_run["data"]["outputs"]["before"]["images"] == {"app": "shop:1"}
    assert dry_run["data"]["outputs"]["dry_run"] == "accepted by the server"
    assert apply["data"]["outputs"]["applied"] is True
    assert wait["data"]["outputs"]["done"] is True
    assert wait["data"]["outputs"]["after"]["revision"] == 2
    assert wait["data"]["outputs"]["after"]["ready_replicas"] == 2
    assert "successfully rolled out" in wait["data"]["outputs"]["rollout"]
    assert any(
        e["kind"] == "node.log" and e["message"].startswith(f"Deployment {ns}/checkout restarted")
        for e in entries
    )
    started = [e for e in entries if e["kind"] == "node.started"]
    assert started[0]["data"]["inputs"] == {
        "cluster": "default",
        "operation": "restart",
        "kind": "Deployment",
        "namespace": ns,
        "name": "checkout",
    }


async def test_a_restart_of_a_statefulset_waits_for_its_rolling_update(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    _statefulset(admin, ns, "db", "db:1")
    await rolled_out(admin, StatefulSet, ns, "db")
    action = RESTART.replace("kind: Deployment", "kind: StatefulSet")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="db")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    assert row["outputs"]["after"]["revision"] == 2
    sts = get(admin, StatefulSet, ns, "db")
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    assert "restartedAt" in str(sts["spec"]["template"]["metadata"]["annotations"])


async def test_a_paused_deployment_is_refused(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout", paused=True)
    generation = get(admin, Deployment, ns, "checkout")["metadata"]["generation"]
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert f"Deployment {ns}/checkout is paused" in row["message"]
    assert "kubectl rollout resume" in row["message"]
    assert get(admin, Deployment, ns, "checkout")["metadata"]["generation"] == generation


async def test_a_workload_that_does_not_exist_fails_the_dry_run_naming_it(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="missing")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert row["message"].startswith(f"restart (dry run): Deployment {ns}/missing: dry run refused")
    assert "not found" in row["message"]
    assert [e["data"]["node"] for e in await _timeline(heal) if e["kind"] == "node.started"] == [
        "dry_run"
    ]


async def test_a_token_without_patch_is_refused_as_forbidden_and_nothing_changes(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout")
    generation = get(admin, Deployment, ns, "checkout")["metadata"]["generation"]
    action = RESTART + "cluster: readonly\n"
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert f"Deployment {ns}/checkout: dry run refused: forbidden" in row["message"]
    assert 'User "heal-readonly" cannot patch' in row["message"]
    assert get(admin, Deployment, ns, "checkout")["metadata"]["generation"] == generation


async def test_a_webhook_that_cannot_dry_run_is_reported_as_such(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin, labels={"heal-test-webhook": "on"})
    deployment(admin, ns, "checkout")
    webhook = f"side-effects-{ns}"
    admin.create(
        build(
            WebhookConfiguration,
            {
                "metadata": {"name": webhook},
                "webhooks": [
                    {
                        "name": "audit.example.com",
                        "sideEffects": "Unknown",  # may have side effects, even on a dry run
                        "failurePolicy": "Ignore",
                        "admissionReviewVersions": ["v1beta1"],
                        "clientConfig": {"url": "https://127.0.0.1:9/"},
                        "namespaceSelector": {"matchLabels": {"heal-test-webhook": "on"}},
                        "rules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": ["UPDATE"],
                                "resources": ["deployments"],
                            }
                        ],
                    }
                ],
            },
        )
    )
    try:
        generation = get(admin, Deployment, ns, "checkout")["metadata"]["generation"]
        heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")
        row = await _run(heal)
    finally:
        admin.delete(WebhookConfiguration, webhook)

    assert row["status"] == "failure"
    assert f"Deployment {ns}/checkout: cannot be dry-run" in row["message"]
    assert "does not support dry run" in row["message"]
    assert "dry run refused" not in row["message"]
    assert get(admin, Deployment, ns, "checkout")["metadata"]["generation"] == generation


# -- namespaces -----------------------------------------------------------------------------
async def test_a_namespace_not_allowed_is_refused_before_any_request(
    make_heal: HealFactory, cluster: Cluster
) -> None:
    # The cluster's kubeconfig does not exist: any attempt to reach it would say so.
    action = RESTART + "cluster: nowhere\n"
    heal = await _start(make_heal, cluster, action, namespace="payments", deployment="x")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert "namespace 'payments' is not in kubernetes.allowed_namespaces" in row["message"]
    assert "nothing was sent" in row["message"]
    assert "kubeconfig" not in row["message"]


async def test_kube_system_is_never_allowed_even_when_a_matcher_says_so(
    make_heal: HealFactory, cluster: Cluster
) -> None:
    action = RESTART + "cluster: nowhere\n"
    heal = await _start(make_heal, cluster, action, namespace="kube-system", deployment="dns")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert "kube-system is never allowed" in row["message"]


async def test_a_name_that_is_not_a_kubernetes_name_is_refused(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="../../secrets")
    row = await _run(heal)
    assert row["status"] == "failure"
    assert "'../../secrets' is not a valid name" in row["message"]


async def test_a_cluster_whose_kubeconfig_cannot_be_read_fails_saying_so(
    make_heal: HealFactory, cluster: Cluster
) -> None:
    action = RESTART + "cluster: nowhere\n"
    heal = await _start(make_heal, cluster, action, namespace="t-allowed", deployment="x")
    row = await _run(heal)
    assert row["status"] == "failure"
    assert "cluster 'nowhere': its configuration cannot be used" in row["message"]
    assert "/nonexistent/kubeconfig" in row["message"]


# -- scale ----------------------------------------------------------------------------------
SCALE = """
type: kubernetes
operation: scale
target: {kind: Deployment, namespace: "{{ alert.labels.namespace }}", name: checkout}
replicas: "REPLICAS"
bounds: {min: 1, max: 10}
wait: {timeout: 60, interval: 0.5}
"""


async def test_scale_renders_from_the_current_count_within_bounds_and_waits(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout", replicas=2)
    await rolled_out(admin, Deployment, ns, "checkout")
    action = SCALE.replace("REPLICAS", "{{ [outputs.current_replicas + 2, 10] | min }}")
    heal = await _start(make_heal, cluster, action, namespace=ns)

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    assert (row["outputs"]["current_replicas"], row["outputs"]["replicas"]) == (2, 4)
    obj = get(admin, Deployment, ns, "checkout")
    assert (obj["spec"]["replicas"], obj["status"]["readyReplicas"]) == (4, 4)
    entries = await _timeline(heal)
    assert _finished(entries, "dry_run")[0]["data"]["outputs"]["before"]["replicas"] == 2
    assert _finished(entries, "wait")[0]["data"]["outputs"]["after"]["replicas"] == 4
    assert any(e["message"] == f"Deployment {ns}/checkout scaled from 2 to 4" for e in entries)


async def test_a_statefulset_scales_through_its_scale_subresource(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    _statefulset(admin, ns, "checkout", "db:1")
    await rolled_out(admin, StatefulSet, ns, "checkout")
    action = SCALE.replace("REPLICAS", "3").replace("kind: Deployment", "kind: StatefulSet")
    heal = await _start(make_heal, cluster, action, namespace=ns)

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    sts = get(admin, StatefulSet, ns, "checkout")
    assert (sts["spec"]["replicas"], sts["status"]["readyReplicas"]) == (3, 3)
    assert row["outputs"]["after"]["replicas"] == 3


async def test_a_scale_outside_its_bounds_fails_and_nothing_is_applied(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout", replicas=2)
    action = SCALE.replace("REPLICAS", "{{ outputs.current_replicas * 10 }}")
    heal = await _start(make_heal, cluster, action, namespace=ns)

    row = await _run(heal)

    assert row["status"] == "failure"
    assert "replicas 20 is outside the bounds 1-10; nothing was applied" in row["message"]
    assert row["outputs"]["current_replicas"] == 2
    assert get(admin, Deployment, ns, "checkout")["spec"]["replicas"] == 2


async def test_a_scale_that_renders_no_number_fails_as_bad_input(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout", replicas=2)
    heal = await _start(make_heal, cluster, SCALE.replace("REPLICAS", "many"), namespace=ns)
    row = await _run(heal)
    assert row["status"] == "failure"
    assert "replicas rendered to 'many', not a whole number" in row["message"]


# -- rollback -------------------------------------------------------------------------------
ROLLBACK = """
type: kubernetes
operation: rollback
target:
  kind: KIND
  namespace: "{{ alert.labels.namespace }}"
  name: "{{ alert.labels.deployment }}"
wait: {timeout: 60, interval: 0.5}
"""


async def _revisions(admin: Client, ns: str, name: str, *images: str) -> None:
    """A Deployment rolled out once per image: revisions 1..n."""
    deployment(admin, ns, name, image=images[0])
    await rolled_out(admin, Deployment, ns, name)
    for image in images[1:]:
        set_image(admin, Deployment, ns, name, image)
        await rolled_out(admin, Deployment, ns, name)


async def test_rollback_goes_to_the_previous_revision(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _revisions(admin, ns, "checkout", "shop:1", "shop:2")
    action = ROLLBACK.replace("KIND", "Deployment")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    obj = get(admin, Deployment, ns, "checkout")
    assert _images(obj) == ["shop:1"]
    assert "pod-template-hash" not in obj["spec"]["template"]["metadata"]["labels"]
    assert obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert len(_owned_replica_sets(admin, ns)) == 2  # revision 1's ReplicaSet was reused
    outputs = row["outputs"]
    assert (outputs["from_revision"], outputs["to_revision"]) == (2, 1)
    assert outputs["before"]["images"] == {"app": "shop:2"}
    assert outputs["after"]["images"] == {"app": "shop:1"}
    assert outputs["after"]["revision"] == 3


async def test_rollback_to_a_given_revision(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _revisions(admin, ns, "checkout", "shop:1", "shop:2", "shop:3")
    action = ROLLBACK.replace("KIND", "Deployment") + "to_revision: 1\n"
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    assert _images(get(admin, Deployment, ns, "checkout")) == ["shop:1"]
    assert row["outputs"]["to_revision"] == 1


async def test_rollback_to_the_current_template_has_nothing_to_do(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _revisions(admin, ns, "checkout", "shop:1", "shop:2")
    generation = get(admin, Deployment, ns, "checkout")["metadata"]["generation"]
    action = ROLLBACK.replace("KIND", "Deployment") + "to_revision: 2\n"
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    assert row["outputs"]["nothing_to_do"] is True
    assert row["outputs"]["applied"] is False
    line = "skipped rollback (current template already matches revision 2)"
    assert any(e["message"] == line for e in await _timeline(heal))
    assert get(admin, Deployment, ns, "checkout")["metadata"]["generation"] == generation


async def test_rollback_to_a_revision_that_is_not_there_fails_naming_it(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _revisions(admin, ns, "checkout", "shop:1")
    action = ROLLBACK.replace("KIND", "Deployment")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")
    row = await _run(heal)
    assert row["status"] == "failure"
    assert f"Deployment {ns}/checkout: no rollout history found" in row["message"]


def _statefulset(admin: Client, ns: str, name: str, image: str) -> None:
    admin.create(
        build(
            StatefulSet,
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "replicas": 2,
                    "serviceName": name,
                    "selector": {"matchLabels": {"app": name}},
                    "template": pod_template(name, image),
                },
            },
        )
    )


async def test_a_statefulset_rolls_back_through_its_controller_revisions(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    _statefulset(admin, ns, "db", "db:1")
    await rolled_out(admin, StatefulSet, ns, "db")
    set_image(admin, StatefulSet, ns, "db", "db:2")
    await rolled_out(admin, StatefulSet, ns, "db")
    action = ROLLBACK.replace("KIND", "StatefulSet")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="db")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    sts = get(admin, StatefulSet, ns, "db")
    assert _images(sts) == ["db:1"]
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
    revisions = sorted(r.revision for r in admin.list(ControllerRevision, namespace=ns))
    assert revisions == [2, 3]  # revision 1's data became revision 3
    assert (row["outputs"]["from_revision"], row["outputs"]["to_revision"]) == (2, 1)
    assert row["outputs"]["after"] == {**row["outputs"]["after"], "revision": 3}


async def test_a_daemonset_rolls_back_through_its_controller_revisions(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    template = pod_template("agent", "a:1")
    # No node lifecycle controller runs here to lift the stand-in node's not-ready taint,
    # which Deployments' pods ignore but a DaemonSet's are kept off by.
    not_ready = {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}
    template["spec"]["tolerations"] = [{**not_ready, "effect": "NoSchedule"}]
    spec = {"selector": {"matchLabels": {"app": "agent"}}, "template": template}
    admin.create(build(DaemonSet, {"metadata": {"name": "agent", "namespace": ns}, "spec": spec}))
    await rolled_out(admin, DaemonSet, ns, "agent")
    set_image(admin, DaemonSet, ns, "agent", "a:2")
    await rolled_out(admin, DaemonSet, ns, "agent")
    action = ROLLBACK.replace("KIND", "DaemonSet") + "to_revision: 1\n"
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="agent")

    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    assert _images(get(admin, DaemonSet, ns, "agent")) == ["a:1"]
    assert row["outputs"]["before"]["images"] == {"app": "a:2"}
    assert row["outputs"]["after"]["images"] == {"app": "a:1"}
    assert row["outputs"]["after"]["revision"] == 3


# -- wait -----------------------------------------------------------------------------------
async def _stalled(admin: Client, ns: str, **spec: Any) -> None:
    """A rolled-out Deployment whose next rollout cannot start a pod (a pod quota)."""
    deployment(admin, ns, "checkout", replicas=2, **spec)
    await rolled_out(admin, Deployment, ns, "checkout")
    admin.create(
        build(
            ResourceQuota,
            {"metadata": {"name": "pods", "namespace": ns}, "spec": {"hard": {"pods": "2"}}},
        )
    )
    # No quota controller runs here: the usage the admission check reads is set by hand.
    usage = {"status": {"hard": {"pods": "2"}, "used": {"pods": "2"}}}
    admin.patch(ResourceQuota.Status, "pods", usage, namespace=ns, patch_type=PatchType.MERGE)


async def test_a_rollout_past_its_progress_deadline_fails_the_action(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _stalled(admin, ns, progressDeadlineSeconds=1)
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert "rollout: " in row["message"]
    assert "'checkout' exceeded its progress deadline" in row["message"]


async def test_a_rollout_slower_than_wait_timeout_fails_the_action(
    make_heal: HealFactory, cluster: Cluster, admin: Client
) -> None:
    ns = namespace(admin)
    await _stalled(admin, ns)
    action = RESTART.replace("timeout: 60", "timeout: 1")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")

    row = await _run(heal)

    assert row["status"] == "failure"
    assert "the rollout did not complete within 1 s" in row["message"]
    assert "new replicas have been updated" in row["message"]  # the stalled surge pod
    polls = [e for e in await _timeline(heal) if e["data"].get("node") == "wait"]
    assert polls  # it did wait before giving up


# -- crashes --------------------------------------------------------------------------------
async def _crash_during(heal: Heal, monkeypatch: pytest.MonkeyPatch, node: str) -> None:
    """The next wake runs ``node``, then heal dies before its outcome is stored."""
    row = await _row(heal)
    assert row["current_node"] == node

    with heal_dies_before_commit(heal, monkeypatch):
        await _wake_once(heal)
    assert (await _row(heal))["version"] == row["version"]  # nothing of that wake was kept


async def test_a_crash_mid_wait_resumes_waiting_and_never_applies_again(
    make_heal: HealFactory, cluster: Cluster, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout")
    before = await rolled_out(admin, Deployment, ns, "checkout")
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")
    await _wake_once(heal)  # dry_run
    applied = await _wake_once(heal)  # apply, committed
    assert applied["current_node"] == "wait"

    await _crash_during(heal, monkeypatch, "wait")
    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    after = get(admin, Deployment, ns, "checkout")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert len(_owned_replica_sets(admin, ns)) == 2
    started = [e["data"]["node"] for e in await _timeline(heal) if e["kind"] == "node.started"]
    assert started == ["dry_run", "apply", "wait"]


async def test_an_apply_re_sent_after_a_crash_is_the_same_request(
    make_heal: HealFactory, cluster: Cluster, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace(admin)
    deployment(admin, ns, "checkout")
    before = await rolled_out(admin, Deployment, ns, "checkout")
    heal = await _start(make_heal, cluster, RESTART, namespace=ns, deployment="checkout")
    await _wake_once(heal)  # dry_run

    await _crash_during(heal, monkeypatch, "apply")  # sent; its outcome lost
    row = await _run(heal)  # apply is sent again

    assert row["status"] == "success", row["message"]
    after = get(admin, Deployment, ns, "checkout")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1  # one restart
    assert len(_owned_replica_sets(admin, ns)) == 2


async def test_a_rollback_re_sent_after_a_crash_does_not_go_back_a_second_revision(
    make_heal: HealFactory, cluster: Cluster, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace(admin)
    await _revisions(admin, ns, "checkout", "shop:1", "shop:2", "shop:3")
    action = ROLLBACK.replace("KIND", "Deployment")
    heal = await _start(make_heal, cluster, action, namespace=ns, deployment="checkout")
    await _wake_once(heal)  # dry_run: revision 2 is the one before

    await _crash_during(heal, monkeypatch, "apply")
    await rolled_out(admin, Deployment, ns, "checkout")  # revision 2's template is now revision 4
    row = await _run(heal)

    assert row["status"] == "success", row["message"]
    obj = get(admin, Deployment, ns, "checkout")
    assert _images(obj) == ["shop:2"]  # not shop:1, the revision before that
    assert obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
