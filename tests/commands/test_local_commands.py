"""The local plugin through heal: a policy, an alert, the program really run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from command_support import (
    everything_stored,
    gone_soon,
    policy,
    run,
    start,
    timeline,
    wait_for_file,
)
from conftest import HealFactory
from helpers import Clock, drive

from heal.engine.interfaces import NodeCall, NodeFailed
from heal.plugins.commands.local import DEFAULT_PATH, LocalPlugin
from heal.policy.executors import LocalAction

PY = sys.executable
ARGV = "import sys, json; print(json.dumps(sys.argv[1:]))"


@pytest.fixture
def backend(sqlite_url: str) -> tuple[str, str]:
    """SQLite is enough here: the engine's guarantees are tested on every backend."""
    return sqlite_url, "embedded"


def local(command: str, **keys: str) -> str:
    lines = [f"    {key}: {value}" for key, value in keys.items()]
    return "\n".join(["  run-it:", "    type: local", f"    command: {command}", *lines])


async def test_each_argument_reaches_the_program_as_one_argument(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    labels = {
        "a": "two words",
        "b": 'it\'s "quoted"',
        "c": f"x; touch {tmp_path}/owned",
        "d": f"$(touch {tmp_path}/owned2) `id`",
        "e": "line one\nline two",
        "f": "",
        "g": "--help",
    }
    args = ", ".join(f'"{{{{ alert.labels.{k} }}}}"' for k in labels)
    text = policy(local(f'[{PY}, -c, "{ARGV}", {args}]'))
    heal, row = await run(make_heal, clock, text, labels=labels)
    assert row["status"] == "success", row["message"]
    assert json.loads(row["outputs"]["stdout"]) == list(labels.values())
    assert row["outputs"]["exit_code"] == 0
    assert row["outputs"]["stderr"] == ""
    assert isinstance(row["outputs"]["duration_ms"], int)
    assert not list(tmp_path.glob("owned*"))
    finished = [e for e in await timeline(heal) if e["kind"] == "node.finished"]
    assert finished[-1]["data"]["outputs"]["stdout"] == row["outputs"]["stdout"]


async def test_the_environment_is_only_env_and_path(
    make_heal: HealFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEAL_SHOULD_NOT_LEAK", "heal's own")
    env = '{CACHE_DIR: /var/cache/app, SERVICE: "{{ alert.labels.service }}"}'
    _heal, row = await run(make_heal, clock, policy(local("[/usr/bin/env]", env=env)))
    assert row["status"] == "success", row["message"]
    lines = row["outputs"]["stdout"].splitlines()
    assert sorted(lines) == sorted(
        ["CACHE_DIR=/var/cache/app", "SERVICE=checkout", f"PATH={DEFAULT_PATH}"]
    )


async def test_env_may_set_path_and_programs_are_found_on_it(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    program = tmp_path / "clear-cache"
    program.write_text('#!/bin/sh\necho cleared "$1" in "$CACHE_DIR"\n')
    program.chmod(0o755)
    env = f"{{PATH: {tmp_path}, CACHE_DIR: /var/cache/app}}"
    text = policy(local('[clear-cache, "{{ alert.labels.service }}"]', env=env, cwd=str(tmp_path)))
    _heal, row = await run(make_heal, clock, text)
    assert row["status"] == "success", row["message"]
    assert row["outputs"]["stdout"] == "cleared checkout in /var/cache/app\n"


async def test_a_timeout_kills_the_whole_process_group(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    script = f"echo $$ > {tmp_path}/pid; sleep 30 & echo $! > {tmp_path}/child; wait"
    text = policy(local(f'[/bin/sh, -c, "{script}"]', timeout="1"))
    _heal, row = await run(make_heal, clock, text)
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"] == "local command: killed after 1 s (timeout)"
    assert row["outputs"]["exit_code"] is None
    assert row["outputs"]["signal"] == "SIGTERM"
    assert gone_soon(int((tmp_path / "pid").read_text()))
    assert gone_soon(int((tmp_path / "child").read_text()))  # the grandchild too


async def test_a_group_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    script = f"trap '' TERM; sleep 30 & echo $! > {tmp_path}/child; wait; wait"
    plugin = LocalPlugin(kill_grace=0.2)
    config = LocalAction(type="local", command=["/bin/sh", "-c", script], timeout=1)
    call = NodeCall(1, config.steps[0], {}, {}, "heal-1-run-a0-p0", 60.0, config=config)
    with pytest.raises(NodeFailed, match="killed after 1 s") as failed:
        await plugin.run_node(call)
    assert failed.value.outputs["signal"] == "SIGKILL"
    assert gone_soon(int((tmp_path / "child").read_text()))


async def test_output_is_kept_up_to_64_kib_and_the_rest_is_read_and_dropped(
    make_heal: HealFactory, clock: Clock
) -> None:
    code = "import sys; sys.stdout.write('o' * 300000); sys.stderr.write('e' * 200000)"
    _heal, row = await run(make_heal, clock, policy(local(f'[{PY}, -c, "{code}"]')))
    assert row["status"] == "success", row["message"]
    stdout, stderr = row["outputs"]["stdout"], row["outputs"]["stderr"]
    assert stdout == "o" * 65536 + "\n[output truncated: first 65536 of 300000 bytes kept]"
    assert stderr == "e" * 65536 + "\n[output truncated: first 65536 of 200000 bytes kept]"


async def test_success_exit_codes_decide_success(make_heal: HealFactory, clock: Clock) -> None:
    command = '[/bin/sh, -c, "echo done; exit 3"]'
    _heal, row = await run(make_heal, clock, policy(local(command, success_exit_codes="[0, 3]")))
    assert (row["status"], row["outputs"]["exit_code"]) == ("success", 3)


async def test_another_exit_code_fails_with_the_end_of_stderr(
    make_heal: HealFactory, clock: Clock
) -> None:
    script = (
        "echo working; for i in $(seq 1 400); do echo noise $i >&2; done; "
        "echo disk full >&2; exit 3"
    )
    _heal, row = await run(make_heal, clock, policy(local(f'[/bin/sh, -c, "{script}"]')))
    assert (row["status"], row["failure_type"]) == ("failure", "execute_failure")
    assert row["message"].startswith("local command: exit code 3 (success: 0); stderr: …")
    assert row["message"].endswith("noise 400\ndisk full")
    assert "noise 1\n" not in row["message"]
    assert row["outputs"]["exit_code"] == 3  # the outputs of the failed run are kept
    assert row["outputs"]["stdout"] == "working\n"


async def test_a_secret_the_program_prints_is_masked(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    secret = "s3cr3t-value-of-the-api"
    (tmp_path / "token").write_text(f"token={secret}\n")
    text = policy(
        local(f"[/bin/cat, {tmp_path}/token]"), extra="secrets:\n  api: {env: HEAL_TEST_API}\n"
    )
    heal, row = await run(make_heal, clock, text, environ={"HEAL_TEST_API": secret})
    assert row["status"] == "success", row["message"]
    assert row["outputs"]["stdout"] == "token=***\n"
    stored = everything_stored(row, await timeline(heal))
    assert secret not in stored
    assert "token=***" in stored


async def test_a_missing_working_directory_is_named(tmp_path: Path) -> None:
    plugin = LocalPlugin()
    config = LocalAction(type="local", command=["/bin/true"], cwd=f"{tmp_path}/gone")
    call = NodeCall(1, config.steps[0], {}, {}, "heal-1-run-a0-p0", 60.0, config=config)
    with pytest.raises(NodeFailed) as failed:
        await plugin.run_node(call)
    assert failed.value.message == (
        f"cannot start '/bin/true': No such file or directory: {tmp_path}/gone"
    )
    assert failed.value.permanent


async def test_a_missing_program_fails_at_once(make_heal: HealFactory, clock: Clock) -> None:
    retry = "{is_enabled: true, max_retry_times: 3, retry_interval: 1}"
    text = policy(local("[/no/such/program, x]", failed_retry=retry))
    heal, row = await run(make_heal, clock, text)
    assert row["status"] == "failure"
    assert row["message"] == (
        "local command: cannot start '/no/such/program': No such file or directory"
    )
    started = [e for e in await timeline(heal) if e["kind"] == "node.started"]
    assert len(started) == 1  # permanent: no retry


# -- heal dying while a command runs -------------------------------------------------------
def _counting(tmp_path: Path, idempotent: bool) -> str:
    """A command that counts its runs, and takes long only the first time."""
    runs = tmp_path / "runs"
    script = f"echo $$ >> {runs}; if [ $(wc -l < {runs}) -eq 1 ]; then sleep 30; fi; echo finished"
    return policy(
        local(f'[/bin/sh, -c, "{script}"]', idempotent=str(idempotent).lower(), timeout="60")
    )


@pytest.mark.parametrize("idempotent", [False, True])
async def test_after_heal_died_mid_run_the_command_runs_again_only_if_idempotent(
    make_heal: HealFactory, clock: Clock, tmp_path: Path, idempotent: bool
) -> None:
    heal = await start(make_heal, clock, _counting(tmp_path, idempotent))
    wake = asyncio.create_task(heal.engine.wake(1, 0))
    first = await wait_for_file(tmp_path / "runs")
    wake.cancel()  # heal stops while the command runs
    with pytest.raises(asyncio.CancelledError):
        await wake
    assert gone_soon(int(first.split()[0]))  # the command did not outlive its wake

    row = await drive(heal, clock, 1)  # the restarted heal

    runs = (tmp_path / "runs").read_text().split()
    if idempotent:
        assert (row["status"], row["outputs"]["stdout"]) == ("success", "finished\n")
        assert len(runs) == 2
    else:
        assert (row["status"], row["failure_type"]) == ("failure", "outcome_unknown")
        assert "whether it ran is unknown" in row["message"]
        assert len(runs) == 1  # not run a second time


async def test_cancelling_the_action_stops_its_command(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    heal = await start(make_heal, clock, _counting(tmp_path, idempotent=False))
    wake = asyncio.create_task(heal.engine.wake(1, 0))
    first = await wait_for_file(tmp_path / "runs")
    result = await heal.engine.cancel(1, who="tester")
    await wake
    assert result.cancelled
    assert gone_soon(int(first.split()[0]))
    messages = [e["message"] for e in await timeline(heal)]
    assert any(m.startswith("stopping the local command (process group") for m in messages)


async def test_a_secret_cut_by_the_output_limit_is_not_kept_in_part(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    secret = "s3cr3t-value-of-the-api"
    # The secret straddles byte 65536 of stdout, and the start of the 500 bytes of stderr
    # a failure's message quotes.
    (tmp_path / "out").write_text("o" * (65536 - 6) + secret + "\n")
    (tmp_path / "err").write_text("e" * 70000 + secret + "y" * 480 + " disk full\n")
    script = f"cat {tmp_path}/out; cat {tmp_path}/err >&2; exit 1"
    text = policy(
        local(f'[/bin/sh, -c, "{script}"]'), extra="secrets:\n  api: {env: HEAL_TEST_API}\n"
    )
    heal, row = await run(make_heal, clock, text, environ={"HEAL_TEST_API": secret})
    stdout = row["outputs"]["stdout"]
    assert stdout.startswith("o" * (65536 - 6) + "\n[output truncated: first 65530 of ")
    stored = everything_stored(row, await timeline(heal))
    assert secret[:6] not in stored
    assert row["message"].endswith("; stderr: …" + "y" * 480 + " disk full")
