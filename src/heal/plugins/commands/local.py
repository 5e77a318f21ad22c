"""The ``local`` plugin: a program run by heal itself, without a shell.

The program gets only the environment the policy gives it (plus ``PATH``), runs in its
own process group, and the whole group is stopped when it overruns its timeout (SIGTERM,
then SIGKILL after a grace), when the action is cancelled, or when the wake running it is
cancelled (heal shutting down).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from asyncio.subprocess import DEVNULL, PIPE, Process
from dataclasses import dataclass, field

from heal.engine.interfaces import NodeCall, NodeFailed, NodeResult, PluginContext
from heal.plugins.commands.output import (
    Captured,
    Outcome,
    capture,
    check_outcome,
    command_config,
    cut_secret_edges,
    finish_reading,
    kill_seconds,
    render_argv,
    render_one,
)
from heal.policy.executors import LocalAction

# What a program finds on PATH when the policy's env does not set one: the system's own
# directories, never heal's (a virtualenv's bin would shadow system tools).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Seconds between SIGTERM and SIGKILL: time for the program to clean up.
KILL_GRACE = 5.0
# Seconds the output is still read after the program exited: a child it left behind may
# hold the pipes open, and heal must not wait for it.
DRAIN_GRACE = 2.0
# A missing program or directory, or one heal may not run: running it again cannot help.
_PERMANENT_START_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError)


@dataclass(slots=True)
class _Run:
    """A command of an action, from before its process exists (a cancel arriving while it
    starts must still reach it) until it ended."""

    process: Process | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class LocalPlugin:
    type = "local"

    def __init__(self, *, kill_grace: float = KILL_GRACE, drain_grace: float = DRAIN_GRACE) -> None:
        self.kill_grace = kill_grace
        self.drain_grace = drain_grace
        self._running: dict[int, _Run] = {}

    @classmethod
    def from_context(cls, context: PluginContext) -> LocalPlugin:
        return cls()

    async def cancel(self, call: NodeCall) -> str | None:
        """Stop the action's command if this process runs it (the run then ends as its
        timeout would, with SIGTERM then SIGKILL); None if it does not."""
        run = self._running.get(call.action_id)
        if run is None or (run.process is not None and run.process.returncode is not None):
            return None
        run.stop.set()
        group = run.process.pid if run.process is not None else "starting"
        return (
            f"stopping the local command (process group {group}): SIGTERM, "
            f"then SIGKILL after {self.kill_grace:g} s"
        )

    async def aclose(self) -> None:
        for run in list(self._running.values()):
            if run.process is not None:
                _signal_group(run.process, signal.SIGKILL)

    async def run_node(self, call: NodeCall) -> NodeResult:
        config = command_config(call, LocalAction)
        argv = render_argv(config.command, call.context)
        env = {
            name: render_one(value, call.context, f"env.{name}")
            for name, value in config.env.items()
        }
        env.setdefault("PATH", DEFAULT_PATH)
        inputs = {"command": argv, "env": env, "cwd": config.cwd}
        began = time.monotonic()
        run = self._running[call.action_id] = _Run()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=DEVNULL,
                stdout=PIPE,
                stderr=PIPE,
                env=env,
                cwd=config.cwd,
                start_new_session=True,  # its own process group, which a kill reaches whole
            )
        except OSError as exc:
            del self._running[call.action_id]
            raise NodeFailed(
                f"cannot start {argv[0]!r}: {_os_error(exc, argv[0])}",
                inputs=inputs,
                permanent=isinstance(exc, _PERMANENT_START_ERRORS),
            ) from exc
        except BaseException:
            del self._running[call.action_id]
            raise
        run.process = process
        outcome = await self._follow(process, run, call, kill_seconds(config, call), began)
        outputs = outcome.outputs()
        check_outcome(outcome, config, inputs, outputs)
        return NodeResult(inputs=inputs, outputs=outputs)

    async def _follow(
        self, process: Process, run: _Run, call: NodeCall, limit: float, began: float
    ) -> Outcome:
        stdout, stderr = Captured(), Captured()
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            asyncio.create_task(capture(process.stdout, stdout)),
            asyncio.create_task(capture(process.stderr, stderr)),
        ]
        killed_after: float | None = None
        try:
            if not await _exited_within(process, run.stop, limit):
                if not run.stop.is_set():
                    killed_after = limit
                await self._stop_group(process, readers)
            await finish_reading(readers, self.drain_grace)
        except BaseException:  # cancelled: heal is stopping; leave nothing running behind
            _signal_group(process, signal.SIGKILL)
            for reader in readers:
                reader.cancel()
            raise
        finally:
            if self._running.get(call.action_id) is run:
                del self._running[call.action_id]
        for captured in (stdout, stderr):
            cut_secret_edges(captured, call.secrets.values())
        code = process.returncode
        return Outcome(
            exit_code=code if code is not None and code >= 0 else None,
            stdout=stdout,
            stderr=stderr,
            duration_ms=round((time.monotonic() - began) * 1000),
            signal=_signal_name(-code) if code is not None and code < 0 else None,
            killed_after=killed_after,
        )

    async def _stop_group(self, process: Process, readers: list[asyncio.Task[None]]) -> None:
        """SIGTERM to the whole group; SIGKILL to whatever of it is left after the grace
        (the program, and any child still holding its output open)."""
        _signal_group(process, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.kill_grace):
                await process.wait()
                await asyncio.wait(readers)
        _signal_group(process, signal.SIGKILL)
        await process.wait()


async def _exited_within(process: Process, stop: asyncio.Event, limit: float) -> bool:
    """True if the process exited within ``limit`` s; False at the limit or on a stop."""
    exited = asyncio.create_task(process.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({exited, stopped}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        stopped.cancel()
    return process.returncode is not None and not stop.is_set()


def _signal_group(process: Process, sig: signal.Signals) -> None:
    # The group outlives its leader while a child is in it; an empty group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _os_error(exc: OSError, program: str) -> str:
    """The reason, and the file it is about when that is not the program (the cwd)."""
    reason = exc.strerror or type(exc).__name__
    if exc.filename is None or str(exc.filename) == program:
        return reason
    return f"{reason}: {exc.filename}"
