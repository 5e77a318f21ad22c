"""Per action type: heal's CPU per executor step, against the bundled fakes.

``python -m bench --only executors`` runs, in this process, what ``heal serve`` runs
(SQLite, the embedded runtime claiming wakes, the type's real plugin) over
``--executor-actions`` actions of each type, created in one ingest, and divides the
process's CPU time from that ingest until the last action ended (every thread: ingest,
the runtime, the engine, the database, the plugin's client) by the steps it ran. The far
side runs elsewhere, so its CPU is not counted: the fake ITSM and the fake st2 API as
child processes, a local command as its own process. Types whose far side this machine
lacks (an sshd, a kube-apiserver) are reported as skipped, with why. Report, do not
assert: there is no target.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from bench._proc import ROOT, Child
from bench.common import Result, policy_text
from heal.app import Heal
from heal.domain.actions import ActionStatus
from heal.domain.alerts import Alert, AlertStatus, fingerprint_of
from heal.policy.loader import load_policy_text
from heal.policy.plugins import installed
from heal.settings import Settings
from heal.store import actions_repo, incidents_repo, migrate, timeline_repo

RULE = """
rules:
  - name: bench
    match: {alertname: BenchExecutor}
    group_by: [alertname, target]
    actions: [{action: act}]
"""


@dataclass
class Far:
    """What an action type talks to, and the policy that makes it do so."""

    policy: str
    environ: dict[str, str]


Setup = Callable[[Path], contextlib.AbstractAsyncContextManager[Far | str]]


@contextlib.asynccontextmanager
async def _http(workdir: Path) -> AsyncIterator[Far | str]:
    itsm = Child("itsm", "bench.itsm", ["--finish-after-polls", "1", "--latency", "0"], workdir)
    await itsm.start()
    try:
        text = policy_text(itsm.url, schedule=0.05)
        policy = text[: text.index("rules:")].replace("  ticket:", "  act:", 1)
        yield Far(policy + RULE, {})
    finally:
        itsm.stop(2.0)


@contextlib.asynccontextmanager
async def _local(workdir: Path) -> AsyncIterator[Far | str]:
    program = shutil.which("true")
    if program is None:
        yield "no `true` program on PATH"
        return
    yield Far(
        f"""
actions:
  act:
    type: local
    command: [{program}, "{{{{ alert.labels.target }}}}"]
    timeout: 10
{RULE}""",
        {},
    )


@contextlib.asynccontextmanager
async def _stackstorm(workdir: Path) -> AsyncIterator[Far | str]:
    st2 = Child("st2", "bench.st2", ["--api-key", "bench-st2-key"], workdir)
    await st2.start()
    try:
        yield Far(
            f"""
secrets:
  st2_key: {{env: BENCH_ST2_KEY}}
actions:
  act:
    type: stackstorm
    base_url: {st2.url}/api/v1
    auth: {{type: api_key, secret: st2_key}}
    default_action: core.local
    parameters: {{cmd: "echo {{{{ alert.labels.target }}}}"}}
    poll_interval: 0.5
{RULE}""",
            {"BENCH_ST2_KEY": "bench-st2-key"},
        )
    finally:
        st2.stop(2.0)


@contextlib.asynccontextmanager
async def _ssh(workdir: Path) -> AsyncIterator[Far | str]:
    """The tests' own sshd (tests/commands/sshd_server.py), key-only, on a free port."""
    if not Path("/usr/sbin/sshd").is_file():
        yield "OpenSSH's sshd is not installed (apt-get install -y openssh-server)"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from commands.sshd_server import running_sshd

    with contextlib.contextmanager(running_sshd)() as server:
        program = shutil.which("true") or "/bin/true"
        yield Far(
            f"""
secrets:
  deploy_key: {{env: BENCH_SSH_KEY}}
ssh:
  known_hosts: {server.known_hosts}
actions:
  act:
    type: ssh
    host: {server.host}
    port: {server.port}
    username: {server.username}
    key: deploy_key
    command: [{program}, "{{{{ alert.labels.target }}}}"]
    timeout: 10
{RULE}""",
            {"BENCH_SSH_KEY": server.client_key},
        )


@contextlib.asynccontextmanager
async def _kubernetes(workdir: Path) -> AsyncIterator[Far | str]:
    """A real control plane (../shared/k8s), one Deployment per action to restart."""
    shared = Path(os.environ.get("HEAL_TEST_K8S_DIR", "/work/shared/k8s"))
    if shutil.which("etcd") is None or not (shared / "start.sh").exists():
        yield f"no Kubernetes control plane: etcd or {shared / 'start.sh'} is missing"
        return
    env = {
        **os.environ,
        **{f"K8S_{n}_PORT": str(_free_port(n == "ETCD")) for n in ("ETCD", "API", "KCM")},
    }
    started = subprocess.run(
        [str(shared / "start.sh"), str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        if started.returncode != 0:
            yield f"start.sh failed: {started.stderr[-500:]}"
            return
        kubeconfig = workdir / "kubeconfig"
        await _deployments(kubeconfig, KUBERNETES_ACTIONS + 1)
        yield Far(
            f"""
kubernetes:
  clusters: {{default: {{kubeconfig: {kubeconfig}}}}}
  allowed_namespaces: [bench]
actions:
  act:
    type: kubernetes
    operation: restart
    target: {{kind: Deployment, namespace: bench, name: "{{{{ alert.labels.target }}}}"}}
    wait: {{timeout: 120, interval: 0.5}}
{RULE}""",
            {},
        )
    finally:
        subprocess.run([str(shared / "stop.sh"), str(workdir)], capture_output=True, timeout=60)


# Rollouts take the controllers' time: fewer actions than the other types.
KUBERNETES_ACTIONS = 10


async def _deployments(kubeconfig: Path, count: int) -> None:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Namespace

    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    await client.create(Namespace.from_dict({"metadata": {"name": "bench"}}))
    for index in range(-1, count - 1):
        name = f"t{index}"
        template = {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "bench:1"}]},
        }
        spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
        body = {"metadata": {"name": name, "namespace": "bench"}, "spec": spec}
        await client.create(Deployment.from_dict(body))
    await client.close()


def _free_port(pair: bool = False) -> int:
    """A port free now (and the next one too, for etcd's peer port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as peer, contextlib.suppress(OSError):
            peer.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no free port pair")


SETUPS: dict[str, Setup] = {
    "http": _http,
    "local": _local,
    "stackstorm": _stackstorm,
    "ssh": _ssh,
    "kubernetes": _kubernetes,
}


def _alert(index: int) -> Alert:
    labels = {"alertname": "BenchExecutor", "target": f"t{index}"}
    return Alert(
        fingerprint=fingerprint_of(labels),
        status=AlertStatus.FIRING,
        labels=labels,
        annotations={"description": "bench"},
        starts_at=datetime.now(UTC) - timedelta(seconds=1),
    )


async def _run_to_the_end(heal: Heal, ids: list[int], timeout: float = 300.0) -> None:
    """Let the runtime run the actions, as ``heal serve`` does, until every one has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with heal.db.read() as connection:
            rows = [await actions_repo.load(connection, i, snapshots=False) for i in ids]
        ended = [r for r in rows if r is not None and ActionStatus(r["status"]).is_terminal]
        if len(ended) == len(ids):
            failed = [r for r in ended if r["status"] != "success"]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} action(s) did not succeed: {failed[0]['message']}"
                )
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"actions not done after {timeout:g} s")


async def _steps_run(heal: Heal, ids: list[int]) -> int:
    """Step runs, as the timeline has them: every started step and every poll of it."""
    runs = 0
    async with heal.db.read() as connection:
        for action_id in ids:
            for entry in await timeline_repo.for_action(connection, action_id):
                if entry["kind"] == "node.finished":
                    runs += int(entry["data"].get("polls", 1))
                elif entry["kind"] == "node.failed":
                    runs += 1
    return runs


async def _measure(kind: str, far: Far, workdir: Path, actions: int) -> dict[str, float]:
    with mock.patch.dict(os.environ, far.environ):  # the policy's secrets
        heal = Heal.build(
            Settings(database_url=f"sqlite+aiosqlite:///{workdir}/{kind}.db"),
            load_policy_text(far.policy),
        )
    await migrate.upgrade(heal.db)
    await heal.runtime.start(heal.engine)
    try:
        warm = await heal.ingest.ingest([_alert(-1)])  # connections, caches, the plugin
        await _run_to_the_end(heal, await _ids(heal, warm.incident_ids))
        began, wall = time.process_time(), time.perf_counter()
        report = await heal.ingest.ingest([_alert(i) for i in range(actions)])
        ids = await _ids(heal, report.incident_ids)
        await _run_to_the_end(heal, ids)
        cpu, elapsed = time.process_time() - began, time.perf_counter() - wall
        steps = await _steps_run(heal, ids)
    finally:
        await heal.runtime.stop()
        await heal.plugins.aclose()
        await heal.db.dispose()
    return {
        "CPU ms/step": 1000 * cpu / max(1, steps),
        "steps": float(steps),
        "wall s": elapsed,
    }


async def _ids(heal: Heal, incident_ids: list[int]) -> list[int]:
    found: list[int] = []
    async with heal.db.read() as connection:
        for incident_id in incident_ids:
            found += [a["id"] for a in await incidents_repo.actions_of(connection, incident_id)]
    return found


async def run(kind: str, run_number: int, *, actions: int) -> Result:
    """One type's figures; a type whose far side is missing gives none, and says why."""
    try:
        installed()[kind].load_runner()
    except ImportError as exc:
        return Result(f"executors/{kind}", run_number, {}, {"skipped": f"plugin missing: {exc}"})
    workdir = Path(tempfile.mkdtemp(prefix=f"heal-bench-{kind}-"))
    try:
        async with SETUPS[kind](workdir) as far:
            if isinstance(far, str):
                return Result(f"executors/{kind}", run_number, {}, {"skipped": far})
            count = min(actions, KUBERNETES_ACTIONS) if kind == "kubernetes" else actions
            figures = await _measure(kind, far, workdir, count)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(f"executors/{kind}", run_number, figures, {"actions": int(count)})
