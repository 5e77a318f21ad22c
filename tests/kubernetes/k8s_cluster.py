"""A real Kubernetes control plane for the session (../shared/k8s: etcd, kube-apiserver
and kube-controller-manager v1.20, a stand-in kubelet), and what tests do on it as admin.

``cluster`` starts it once on free ports and stops it at the end; without etcd or the
binaries the tests that use it are skipped, saying what is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, KubeConfig
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

SHARED = Path(os.environ.get("HEAL_TEST_K8S_DIR", "/work/shared/k8s"))
ADMIN_TOKEN = "test-admin-token"
HEAL_TOKEN = "heal-test-token"
READONLY_TOKEN = "heal-readonly-token"

# The rules docs/executors.md gives heal's service account, exactly.
HEAL_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets"],
        "verbs": ["get", "patch"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale", "statefulsets/scale"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["apps"], "resources": ["replicasets", "controllerrevisions"], "verbs": ["list"]},
]
READONLY_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get", "list"]},
]

WebhookConfiguration = create_global_resource(
    "admissionregistration.k8s.io",
    "v1beta1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
)


@dataclass(frozen=True)
class Cluster:
    run_dir: Path
    admin_kubeconfig: Path
    heal_kubeconfig: Path
    readonly_kubeconfig: Path

    def admin(self) -> Client:
        return Client(KubeConfig.from_file(self.admin_kubeconfig).get(), field_manager="tests")


def build(resource: Any, data: dict[str, Any]) -> Any:
    """The lightkube object of ``data`` (its from_dict is untyped)."""
    return resource.from_dict(data)


def _free_port(pair: bool = False) -> int:
    """A port free now (and the next one, for etcd's peer port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not pair or port >= 65535:
            return port
        with socket.socket() as peer:
            try:
                peer.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def _kubeconfig(admin: Path, token: str, path: Path) -> Path:
    path.write_text(admin.read_text().replace(ADMIN_TOKEN, token))
    return path


def _missing() -> str | None:
    if shutil.which("etcd") is None:
        return "etcd is not installed (apt-get install -y etcd-server)"
    for binary in ("kube-apiserver.xz", "kube-controller-manager.xz"):
        if not (SHARED / "bin" / binary).exists():
            return f"{SHARED / 'bin' / binary} is missing"
    if not (SHARED / "start.sh").exists():
        return f"{SHARED / 'start.sh'} is missing"
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = _missing()
    if missing:
        pytest.skip(f"no Kubernetes control plane for these tests: {missing}")
    run = tmp_path_factory.mktemp("k8s")
    (run / "tokens.csv").write_text(
        f"{ADMIN_TOKEN},test-admin,1000,system:masters\n"
        f"{HEAL_TOKEN},heal,1001,heal\n"
        f"{READONLY_TOKEN},heal-readonly,1002,heal-readonly\n"
    )
    env = {
        **os.environ,
        "K8S_ETCD_PORT": str(_free_port(pair=True)),
        "K8S_API_PORT": str(_free_port()),
        "K8S_KCM_PORT": str(_free_port()),
        "K8S_KUBELET_SECONDS": "900",
    }
    started = subprocess.run(
        [str(SHARED / "start.sh"), str(run)], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        if started.returncode != 0:
            raise RuntimeError(f"start.sh failed: {started.stderr[-2000:]}")
        admin = run / "kubeconfig"
        found = Cluster(
            run,
            admin,
            _kubeconfig(admin, HEAL_TOKEN, run / "heal.kubeconfig"),
            _kubeconfig(admin, READONLY_TOKEN, run / "readonly.kubeconfig"),
        )
        _grant(found.admin())
        yield found
    finally:
        subprocess.run([str(SHARED / "stop.sh"), str(run)], capture_output=True, timeout=60)


def _grant(client: Client) -> None:
    for user, rules in (("heal", HEAL_RULES), ("heal-readonly", READONLY_RULES)):
        client.create(build(ClusterRole, {"metadata": {"name": user}, "rules": rules}))
        client.create(
            build(
                ClusterRoleBinding,
                {
                    "metadata": {"name": user},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": user,
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                    ],
                },
            )
        )


def namespace(client: Client, labels: dict[str, str] | None = None) -> str:
    """A new namespace of the test's own."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.create(build(Namespace, {"metadata": {"name": name, "labels": labels or {}}}))
    return name


def pod_template(app: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def deployment(
    client: Client, ns: str, name: str, image: str = "shop:1", replicas: int = 2, **spec: Any
) -> None:
    client.create(
        build(
            Deployment,
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": pod_template(name, image),
                    **spec,
                },
            },
        )
    )


def set_image(client: Client, resource: Any, ns: str, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    client.patch(resource, name, patch, namespace=ns)


def get(client: Client, resource: Any, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(resource, name, namespace=ns).to_dict()
    return found


async def rolled_out(client: Client, resource: Any, ns: str, name: str) -> dict[str, Any]:
    """Wait (at most 30 s) until the workload's controller reports it fully rolled out."""
    for _ in range(300):
        obj = get(client, resource, ns, name)
        status, spec = obj.get("status", {}), obj["spec"]
        observed = status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
        if "replicas" in spec:
            want = spec["replicas"]
            ready = status.get("updatedReplicas", 0) == want == status.get("readyReplicas", 0)
            done = ready and status.get("replicas", 0) == want
            if kind_is_statefulset(obj):
                done = done and status.get("currentRevision") == status.get("updateRevision")
        else:
            want = status.get("desiredNumberScheduled", 0)
            done = want > 0 and status.get("updatedNumberScheduled", 0) == want
            done = done and status.get("numberAvailable", 0) == want
        if observed and done:
            return obj
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not roll out: {obj.get('status')}")


def kind_is_statefulset(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "StatefulSet" or "serviceName" in obj.get("spec", {})
