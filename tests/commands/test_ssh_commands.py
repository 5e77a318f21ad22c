"""The ssh plugin through heal, against a real OpenSSH sshd (see sshd_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from command_support import (
    everything_stored,
    gone_soon,
    none_running_soon,
    policy,
    run,
    running,
    start,
    timeline,
    wait_for_file,
)
from conftest import HealFactory
from helpers import Clock, drive
from sshd_server import SshServer, running_sshd

from heal.engine.interfaces import NodeCall, NodeFailed
from heal.plugins.commands.pool import ConnectionPool, Target
from heal.plugins.commands.ssh import SshPlugin
from heal.policy.executors import SshAction
from heal.policy.models import Policy, SshSettings

# What the remote user can run (heal's own interpreter may live in root's home).
PY = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
ARGV = "import sys, json; print(json.dumps(sys.argv[1:]))"
SECRETS = "secrets:\n  deploy_key: {env: HEAL_SSH_KEY}\n  api: {env: HEAL_TEST_API}\n"
API_SECRET = "api-token-9f8e7d6c5b4a"


@pytest.fixture
def backend(sqlite_url: str) -> tuple[str, str]:
    """SQLite is enough here: the engine's guarantees are tested on every backend."""
    return sqlite_url, "embedded"


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    yield from running_sshd()


def ssh_policy(
    server: SshServer, command: str, *, known_hosts: Path | None = None, **keys: str
) -> str:
    username = keys.pop("username", server.username)
    lines = [f"    {key}: {value}" for key, value in keys.items()]
    action = "\n".join(
        [
            "  run-it:",
            "    type: ssh",
            '    host: "{{ alert.labels.target }}"',
            f"    port: {server.port}",
            f"    username: {username}",
            "    key: deploy_key",
            f"    command: {command}",
            *lines,
        ]
    )
    known = known_hosts or server.known_hosts
    return policy(action, extra=f"{SECRETS}ssh:\n  known_hosts: {known}\n  connect_timeout: 5\n")


@pytest.fixture
def tmp(sshd: SshServer) -> Path:
    """A directory of this test's that the remote user may write to."""
    return sshd.scratch(uuid.uuid4().hex)


def environ(server: SshServer, key: str | None = None) -> dict[str, str]:
    return {"HEAL_SSH_KEY": key or server.client_key, "HEAL_TEST_API": API_SECRET}


def labels(server: SshServer, **more: str) -> dict[str, str]:
    return {"target": server.host, **more}


async def test_a_command_runs_on_the_host_and_its_output_is_on_the_timeline(
    make_heal: HealFactory, clock: Clock, sshd: SshServer
) -> None:
    text = ssh_policy(sshd, '[/bin/sh, -c, "echo hello from $(hostname); echo warn >&2"]')
    heal, row = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    assert row["status"] == "success", row["message"]
    outputs = row["outputs"]
    assert outputs["stdout"].startswith("hello from ")
    assert (outputs["stderr"], outputs["exit_code"], outputs["host"]) == ("warn\n", 0, sshd.host)
    assert isinstance(outputs["duration_ms"], int)
    entries = await timeline(heal)
    finished = [e for e in entries if e["kind"] == "node.finished"]
    assert finished[-1]["data"]["outputs"] == outputs
    started = [e for e in entries if e["kind"] == "node.started"]
    assert started[-1]["data"]["inputs"]["command"] == [
        "/bin/sh",
        "-c",
        "echo hello from $(hostname); echo warn >&2",
    ]


async def test_each_argument_reaches_the_remote_program_as_one_argument(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path
) -> None:
    nasty = {
        "a": "two words",
        "b": 'it\'s "quoted" \\ back',
        "c": f"x; touch {tmp}/owned",
        "d": f"$(touch {tmp}/owned2) `touch {tmp}/owned3`",
        "e": "line one\nline two",
        "f": "",
        "g": "* ~ && | > /dev/null",
        "h": "--help",
    }
    args = ", ".join(f'"{{{{ alert.labels.{k} }}}}"' for k in nasty)
    text = ssh_policy(sshd, f'[{PY}, -c, "{ARGV}", {args}]')
    _heal, row = await run(
        make_heal, clock, text, environ=environ(sshd), labels=labels(sshd, **nasty)
    )
    assert row["status"] == "success", row["message"]
    assert json.loads(row["outputs"]["stdout"]) == list(nasty.values())
    assert not list(tmp.glob("owned*"))


@pytest.mark.parametrize("host_keys", ["changed", "unknown"])
async def test_a_host_whose_key_is_not_known_is_refused_and_nothing_runs(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path, host_keys: str
) -> None:
    known_hosts = tmp / "known_hosts"
    if host_keys == "changed":
        known_hosts.write_text(sshd.other_host_key_line)
    else:  # the right key, but for another port: this host is not in the file
        known_hosts.write_text(sshd.known_hosts.read_text().replace(f":{sshd.port}", ":1"))
    retry = "{is_enabled: true, max_retry_times: 3, retry_interval: 1}"
    text = ssh_policy(
        sshd,
        f"[/bin/touch, {tmp}/ran]",
        known_hosts=known_hosts,
        failed_retry=retry,
    )
    logins = sshd.accepted_logins()
    heal, row = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"].startswith(
        f"ssh command: the host key of {sshd.host}:{sshd.port} is not in {known_hosts} "
        "or does not match it: refused, nothing ran"
    )
    assert not (tmp / "ran").exists()
    assert sshd.accepted_logins() == logins
    started = [e for e in await timeline(heal) if e["kind"] == "node.started"]
    assert len(started) == 1  # permanent: not retried


async def test_a_key_the_host_does_not_accept_fails_at_once(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path
) -> None:
    text = ssh_policy(sshd, f"[/bin/touch, {tmp}/ran]")
    _heal, row = await run(
        make_heal, clock, text, environ=environ(sshd, sshd.other_key), labels=labels(sshd)
    )
    assert row["status"] == "failure"
    assert row["message"] == (
        f"ssh command: {sshd.username}@{sshd.host}:{sshd.port} refused the key 'deploy_key': "
        "authentication failed, nothing ran"
    )
    assert not (tmp / "ran").exists()


async def test_a_timeout_kills_the_remote_command(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path
) -> None:
    script = f"echo $$ > {tmp}/pid; sleep 37.25; touch {tmp}/finished"
    text = ssh_policy(sshd, f'[/bin/sh, -c, "{script}"]', timeout="1")
    _heal, row = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"] == "ssh command: killed after 1 s (timeout)"
    assert row["outputs"]["signal"] == "TERM"
    assert gone_soon(int((tmp / "pid").read_text()))
    assert none_running_soon(["sleep", "37.25"])  # the whole remote process group went
    assert not (tmp / "finished").exists()


async def test_a_secret_the_remote_command_prints_is_masked(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path
) -> None:
    (tmp / "token").write_text(f"token={API_SECRET}\n")
    text = ssh_policy(sshd, f'[/bin/sh, -c, "cat {tmp}/token; cat {tmp}/token >&2; exit 2"]')
    heal, row = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    assert row["status"] == "failure"
    assert row["outputs"]["stdout"] == "token=***\n"
    assert row["outputs"]["stderr"] == "token=***\n"
    assert row["message"] == "ssh command: exit code 2 (success: 0); stderr: token=***"
    stored = everything_stored(row, await timeline(heal))
    assert API_SECRET not in stored
    assert "BEGIN OPENSSH PRIVATE KEY" not in stored


async def test_a_nonzero_exit_fails_with_the_end_of_stderr(
    make_heal: HealFactory, clock: Clock, sshd: SshServer
) -> None:
    script = "echo partial; echo unit checkout.service not found >&2; exit 5"
    text = ssh_policy(sshd, f'[/bin/sh, -c, "{script}"]')
    _heal, row = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"] == (
        "ssh command: exit code 5 (success: 0); stderr: unit checkout.service not found"
    )
    assert (row["outputs"]["exit_code"], row["outputs"]["stdout"]) == (5, "partial\n")


async def test_commands_to_one_host_share_one_connection(
    make_heal: HealFactory, clock: Clock, sshd: SshServer
) -> None:
    second = "\n".join(
        [
            "  run-too:",
            "    type: ssh",
            '    host: "{{ alert.labels.target }}"',
            f"    port: {sshd.port}",
            f"    username: {sshd.username}",
            "    key: deploy_key",
            "    command: [/bin/echo, second]",
        ]
    )
    text = (
        ssh_policy(sshd, "[/bin/echo, first]")
        .replace("actions:\n", f"actions:\n{second}\n", 1)
        .replace("{action: run-it}", "{action: run-it}, {action: run-too}")
    )
    logins = sshd.accepted_logins()
    heal, first = await run(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    then = await drive(heal, clock, 2)
    assert (first["outputs"]["stdout"], then["outputs"]["stdout"]) == ("first\n", "second\n")
    plugin = heal.engine.plugins["ssh"]
    assert isinstance(plugin, SshPlugin)
    assert plugin.pool.opened == 1
    assert sshd.accepted_logins() == logins + 1


# -- the plugin on its own -----------------------------------------------------------------
def _plugin(server: SshServer, **options: float) -> SshPlugin:
    settings = SshSettings(known_hosts=str(server.known_hosts), connect_timeout=5)
    pool = ConnectionPool(idle_close=options.pop("idle_close", 60.0))
    return SshPlugin(lambda: Policy(ssh=settings), pool=pool, **options)


def _call(
    server: SshServer, command: list[str], *, host: str | None = None, **keys: object
) -> NodeCall:
    config = SshAction.model_validate(
        {
            "type": "ssh",
            "host": host or server.host,
            "port": server.port,
            "username": server.username,
            "key": "deploy_key",
            "command": command,
            **keys,
        }
    )
    secrets = {"deploy_key": server.client_key}
    return NodeCall(1, config.steps[0], {}, secrets, "heal-1-run-a0-p0", 60.0, config=config)


async def test_an_idle_connection_is_closed_and_the_next_command_opens_another(
    sshd: SshServer,
) -> None:
    plugin = _plugin(sshd, idle_close=0.2)
    try:
        first = await plugin.run_node(_call(sshd, ["/bin/echo", "one"]))
        target = Target(sshd.host, sshd.port, sshd.username, "deploy_key")
        assert plugin.pool.connections(target) == 1
        await asyncio.sleep(0.5)
        assert plugin.pool.connections(target) == 0
        second = await plugin.run_node(_call(sshd, ["/bin/echo", "two"]))
        assert (first.outputs["stdout"], second.outputs["stdout"]) == ("one\n", "two\n")
        assert plugin.pool.opened == 2
    finally:
        await plugin.aclose()


async def test_commands_at_once_to_one_host_share_its_connection(sshd: SshServer) -> None:
    plugin = _plugin(sshd)
    try:
        results = await asyncio.gather(
            *(plugin.run_node(_call(sshd, ["/bin/echo", str(n)])) for n in range(12))
        )
        assert [r.outputs["stdout"] for r in results] == [f"{n}\n" for n in range(12)]
        assert plugin.pool.opened == 2  # 8 channels at most on one connection
    finally:
        await plugin.aclose()


async def test_a_host_with_a_port_in_it_is_refused(sshd: SshServer) -> None:
    plugin = _plugin(sshd)
    with pytest.raises(NodeFailed) as failed:
        await plugin.run_node(_call(sshd, ["/bin/true"], host="10.0.0.1:9100"))
    assert failed.value.permanent
    assert "host '10.0.0.1:9100' has a port in it" in failed.value.message


async def test_a_missing_known_hosts_file_is_a_permanent_failure(
    sshd: SshServer, tmp_path: Path
) -> None:
    settings = SshSettings(known_hosts=str(tmp_path / "missing"))
    plugin = SshPlugin(lambda: Policy(ssh=settings))
    with pytest.raises(NodeFailed) as failed:
        await plugin.run_node(_call(sshd, ["/bin/true"]))
    assert failed.value.permanent
    assert failed.value.message.startswith(f"the known_hosts file {tmp_path}/missing cannot")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root login (sshd runs as root)")
async def test_a_kill_the_host_does_not_confirm_is_reported_as_possibly_still_running(
    sshd: SshServer, tmp: Path
) -> None:
    """sshd does not signal a root session: the timeout cannot stop the command."""
    plugin = _plugin(sshd, kill_grace=0.2, confirm_grace=0.2, drain_grace=0.2)
    script = f"echo $$ > {tmp}/pid; exec sleep 38.5"
    call = _call(sshd, ["/bin/sh", "-c", script], username="root", timeout=1)
    try:
        with pytest.raises(NodeFailed) as failed:
            await plugin.run_node(call)
    finally:
        await plugin.aclose()
        for pid in running(["sleep", "38.5"]):
            os.kill(pid, signal.SIGKILL)
    assert failed.value.message.startswith(
        f"killed after 1 s (timeout), but root@{sshd.host}:{sshd.port} did not report the "
        "command's end: it may still be running"
    )
    assert failed.value.permanent  # not idempotent: not run again while it may run


async def test_a_host_that_refuses_the_connection_is_worth_a_retry(sshd: SshServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    plugin = _plugin(sshd)
    call = _call(sshd, ["/bin/true"], port=closed_port)
    with pytest.raises(NodeFailed) as failed:
        await plugin.run_node(call)
    assert not failed.value.permanent
    assert failed.value.message.startswith(
        f"cannot connect to {sshd.username}@{sshd.host}:{closed_port}: "
    )


async def test_a_pooled_connection_the_server_dropped_is_replaced(sshd: SshServer) -> None:
    plugin = _plugin(sshd)
    try:
        await plugin.run_node(_call(sshd, ["/bin/echo", "one"]))
        for pid in _session_processes(sshd.username):  # the server side of the connection
            os.kill(pid, signal.SIGTERM)
        target = Target(sshd.host, sshd.port, sshd.username, "deploy_key")
        deadline = asyncio.get_running_loop().time() + 10
        while plugin.pool.connections(target) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        second = await plugin.run_node(_call(sshd, ["/bin/echo", "two"]))
        assert second.outputs["stdout"] == "two\n"
        assert plugin.pool.opened == 2
    finally:
        await plugin.aclose()


def _session_processes(username: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_text(errors="replace")
        except OSError:
            continue
        if text.startswith(f"sshd: {username}"):
            found.append(int(cmdline.parent.name))
    return found


async def test_cancelling_the_action_stops_its_remote_command(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path
) -> None:
    script = f"echo $$ > {tmp}/pid; sleep 39.5"
    text = ssh_policy(sshd, f'[/bin/sh, -c, "{script}"]')
    heal = await start(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    wake = asyncio.create_task(heal.engine.wake(1, 0))
    pid = int(await wait_for_file(tmp / "pid"))
    result = await heal.engine.cancel(1, who="tester")
    await wake
    assert result.cancelled
    assert gone_soon(pid)
    assert none_running_soon(["sleep", "39.5"])
    messages = [e["message"] for e in await timeline(heal)]
    assert "stopping the ssh command: TERM, then KILL after 5 s" in messages


@pytest.mark.parametrize("idempotent", [False, True])
async def test_after_heal_died_mid_run_the_remote_command_runs_again_only_if_idempotent(
    make_heal: HealFactory, clock: Clock, sshd: SshServer, tmp: Path, idempotent: bool
) -> None:
    runs = tmp / "runs"
    script = f"echo $$ >> {runs}; if [ $(wc -l < {runs}) -eq 1 ]; then sleep 40.5; fi; echo done"
    text = ssh_policy(sshd, f'[/bin/sh, -c, "{script}"]', idempotent=str(idempotent).lower())
    heal = await start(make_heal, clock, text, environ=environ(sshd), labels=labels(sshd))
    wake = asyncio.create_task(heal.engine.wake(1, 0))
    first = int((await wait_for_file(runs)).split()[0])
    wake.cancel()  # heal stops while the command runs
    with pytest.raises(asyncio.CancelledError):
        await wake
    assert gone_soon(first)  # KILL was sent as the wake went

    row = await drive(heal, clock, 1)  # the restarted heal

    if idempotent:
        assert (row["status"], row["outputs"]["stdout"]) == ("success", "done\n")
        assert len(runs.read_text().split()) == 2
    else:
        assert (row["status"], row["failure_type"]) == ("failure", "outcome_unknown")
        assert len(runs.read_text().split()) == 1
