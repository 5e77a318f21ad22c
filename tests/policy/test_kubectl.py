"""The kubectl command lines heal accepts, and the reasons it gives for all others."""

from __future__ import annotations

import pytest

from heal.policy.executors import KubernetesAction
from heal.policy.kubectl import KubectlOperation, KubectlRejected, parse


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "kubectl rollout restart deployment/checkout -n shop",
            KubectlOperation("restart", "Deployment", "checkout", "shop"),
        ),
        (
            "kubectl rollout restart statefulset/db --namespace shop",
            KubectlOperation("restart", "StatefulSet", "db", "shop"),
        ),
        (
            "kubectl rollout restart ds/agent --namespace=infra",
            KubectlOperation("restart", "DaemonSet", "agent", "infra"),
        ),
        (
            "kubectl -n shop rollout restart deploy/checkout",
            None,  # flags before the verb are not one of the forms
        ),
        (
            "kubectl rollout undo deployment/checkout -n shop",
            KubectlOperation("rollback", "Deployment", "checkout", "shop"),
        ),
        (
            "kubectl rollout undo deployment/checkout --to-revision=3 -n shop",
            KubectlOperation("rollback", "Deployment", "checkout", "shop", to_revision=3),
        ),
        (
            "kubectl rollout undo sts/db --to-revision 2 -nshop",
            KubectlOperation("rollback", "StatefulSet", "db", "shop", to_revision=2),
        ),
        (
            "kubectl rollout undo daemonset/agent --to-revision=0 -n=infra",
            KubectlOperation("rollback", "DaemonSet", "agent", "infra"),  # 0: the previous
        ),
        (
            "kubectl scale deployment/checkout --replicas=5 -n shop",
            KubectlOperation("scale", "Deployment", "checkout", "shop", replicas=5),
        ),
        (
            "kubectl   scale   statefulsets/db   --replicas   0   --namespace   shop",
            KubectlOperation("scale", "StatefulSet", "db", "shop", replicas=0),
        ),
        (
            "kubectl scale Deployment.apps/web.v2 --replicas=1 -n shop",
            KubectlOperation("scale", "Deployment", "web.v2", "shop", replicas=1),
        ),
    ],
)
def test_the_allowed_forms_are_read_into_one_operation(
    line: str, expected: KubectlOperation | None
) -> None:
    if expected is None:
        with pytest.raises(KubectlRejected, match="not allowed"):
            parse(line)
        return
    assert parse(line) == expected
    assert parse(line.split()) == expected  # the same, given as argv


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # shell metacharacters: refused whole, never cleaned
        ("kubectl rollout restart deployment/x -n shop; rm -rf /", "shell metacharacter ';'"),
        ("kubectl rollout restart deployment/x -n shop && true", "shell metacharacter '&'"),
        ("kubectl rollout restart deployment/x -n shop | tee", "shell metacharacter '|'"),
        ("kubectl rollout restart deployment/$(whoami) -n shop", "shell metacharacter '$'"),
        ("kubectl rollout restart deployment/`id` -n shop", "shell metacharacter '`'"),
        ("kubectl rollout restart deployment/x -n shop > /tmp/x", "shell metacharacter '>'"),
        ("kubectl rollout restart 'deployment/x' -n shop", 'shell metacharacter "\'"'),
        ("kubectl rollout restart deployment/x -n shop\nkubectl delete ns shop", "'\\n'"),
        ("kubectl rollout restart deployment/* -n shop", "shell metacharacter '*'"),
        ("kubectl rollout restart deployment/x -n ~", "shell metacharacter '~'"),
        # other programs and verbs
        ("", "must start kubectl"),
        ("sudo kubectl rollout restart deployment/x -n shop", "must start kubectl"),
        ("kubectl delete deployment/x -n shop", "kubectl delete deployment/x is not allowed"),
        ("kubectl apply -f x.yaml", "kubectl apply -f is not allowed"),
        ("kubectl rollout pause deployment/x -n shop", "kubectl rollout pause is not allowed"),
        ("kubectl rollout status deployment/x -n shop", "kubectl rollout status is not allowed"),
        ("kubectl exec deployment/x -n shop -- sh", "kubectl exec deployment/x is not allowed"),
        ("kubectl", "kubectl nothing is not allowed"),
        # extra flags and arguments
        ("kubectl rollout restart deployment/x -n shop --context prod", "--context is not"),
        ("kubectl rollout restart deployment/x -n shop --kubeconfig=/x", "--kubeconfig is not"),
        ("kubectl scale deployment/x --replicas=2 -n shop --current-replicas=1", "not allowed"),
        ("kubectl rollout restart deployment/x -n shop --all", "flag --all is not allowed"),
        ("kubectl rollout restart deployment/x --to-revision=2 -n shop", "--to-revision is not"),
        ("kubectl rollout undo deployment/x --replicas=2 -n shop", "--replicas is not allowed"),
        ("kubectl rollout restart deployment/x deployment/y -n shop", "exactly one KIND/NAME"),
        ("kubectl rollout restart -n shop", "exactly one KIND/NAME, got 0"),
        ("kubectl rollout restart deployment x -n shop", "exactly one KIND/NAME, got 2"),
        ("kubectl rollout restart x -n shop", "write the workload as KIND/NAME"),
        ("kubectl rollout restart -n shop -n other deployment/x", "given twice"),
        ("kubectl rollout restart deployment/x -n", "-n needs a value"),
        ("kubectl rollout restart deployment/x --namespace --all", "needs a value"),
        # kinds, names, namespaces, counts
        ("kubectl rollout restart pod/x -n shop", "kind 'pod' is not allowed"),
        ("kubectl rollout restart replicaset/x -n shop", "kind 'replicaset' is not allowed"),
        ("kubectl rollout restart deployment/X_Y -n shop", "not a valid workload name"),
        ("kubectl rollout restart deployment/ -n shop", "not a valid workload name"),
        ("kubectl rollout restart deployment/a/b -n shop", "not a valid workload name"),
        ("kubectl rollout restart deployment/x", "the namespace is required"),
        ("kubectl rollout restart deployment/x -n Shop", "'Shop' is not a valid namespace"),
        ("kubectl rollout restart deployment/x -n a.b", "'a.b' is not a valid namespace"),
        ("kubectl scale deployment/x -n shop", "scale needs --replicas=N"),
        ("kubectl scale deployment/x --replicas=-1 -n shop", "at least 0, not '-1'"),
        ("kubectl scale deployment/x --replicas=2.5 -n shop", "not '2.5'"),
        ("kubectl scale deployment/x --replicas=1e3 -n shop", "not '1e3'"),
        ("kubectl scale daemonset/x --replicas=2 -n shop", "a DaemonSet has no replicas"),
        ("kubectl rollout undo deployment/x --to-revision=last -n shop", "not 'last'"),
    ],
)
def test_everything_else_is_rejected_with_why(line: str, reason: str) -> None:
    with pytest.raises(KubectlRejected) as rejected:
        parse(line)
    assert reason in str(rejected.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["kubectl", "rollout", "restart", "deployment/x;id", "-n", "shop"],
        ["kubectl", "rollout", "restart", "deployment/x -n kube-system", "-n", "shop"],
        ["kubectl", "rollout", "restart", "deployment/x", "-n", ""],
        ["kubectl", "rollout", "restart", " deployment/x", "-n", "shop"],
    ],
)
def test_an_argv_whose_items_hide_more_is_rejected(argv: list[str]) -> None:
    with pytest.raises(KubectlRejected, match="not allowed"):
        parse(argv)


@pytest.mark.parametrize(
    "line",
    [
        "kubectl rollout restart deployment/checkout -n shop",
        "kubectl rollout undo statefulset/db --to-revision=4 -n shop",
        "kubectl rollout undo daemonset/agent -n infra",
        "kubectl scale deployment/checkout --replicas=3 -n shop",
    ],
)
def test_an_operation_is_a_valid_kubernetes_action(line: str) -> None:
    operation = parse(line)
    action = KubernetesAction.model_validate(operation.action_fields())
    assert action.operation == operation.operation
    assert (action.target.kind, action.target.namespace, action.target.name) == (
        operation.kind,
        operation.namespace,
        operation.name,
    )
    assert action.to_revision == operation.to_revision
    if operation.replicas is not None:
        assert action.replicas == operation.replicas
        assert action.bounds is not None
        assert (action.bounds.min, action.bounds.max) == (operation.replicas,) * 2


def test_a_wait_longer_than_the_action_may_run_is_refused() -> None:
    fields = parse("kubectl rollout restart deployment/checkout -n shop").action_fields()
    with pytest.raises(ValueError, match=r"wait.timeout \(900 s\) must be shorter"):
        KubernetesAction.model_validate({**fields, "wait": {"timeout": 900}})
    action = KubernetesAction.model_validate({**fields, "wait": {"timeout": 900}, "timeout": 1200})
    assert action.wait is not None
    assert action.wait.timeout == 900
