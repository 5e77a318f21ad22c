"""What the ssh and local plugins share: argv rendering, output capture, the outcome.

A command's output is read to its end whatever its size, so the program never blocks on
a full pipe; only the first ``OUTPUT_LIMIT`` bytes of each stream are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from heal.engine.interfaces import NodeCall, NodeFailed
from heal.policy.executors import LocalAction, SshAction
from heal.policy.expressions import ExpressionError, render

OUTPUT_LIMIT = 64 * 1024
_CHUNK = 16 * 1024
# The end of stderr quoted in a failure's message: enough for the error, not a log dump.
STDERR_TAIL = 500
# As the engine's Redactor: shorter values are not masked.
_MIN_SECRET = 4

CommandAction = SshAction | LocalAction
C = TypeVar("C", SshAction, LocalAction)


class ByteStream(Protocol):
    """An asyncio ``StreamReader`` or an asyncssh ``SSHReader`` opened without encoding."""

    async def read(self, n: int = -1) -> bytes: ...


@dataclass(slots=True)
class Captured:
    """The first ``OUTPUT_LIMIT`` bytes of a stream, its last few (for a failure's
    message), and how many there were in all."""

    kept: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    total: int = 0

    def text(self) -> str:
        decoded = bytes(self.kept).decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            decoded += f"\n[output truncated: first {len(self.kept)} of {self.total} bytes kept]"
        return decoded


async def capture(stream: ByteStream, into: Captured, limit: int = OUTPUT_LIMIT) -> None:
    """Read ``stream`` to its end into ``into`` (which the caller keeps, so what was read
    before a kill or a cancel is not lost)."""
    while chunk := await stream.read(_CHUNK):
        into.total += len(chunk)
        room = limit - len(into.kept)
        if room > 0:
            into.kept += chunk[:room]
        into.tail += chunk[-STDERR_TAIL:]
        del into.tail[:-STDERR_TAIL]


def cut_secret_edges(captured: Captured, secrets: Iterable[str]) -> None:
    """Where the kept head or tail cuts the stream, drop a piece of a secret left at the
    cut: the engine masks whole secrets only, so half of one would be stored as it is."""
    values = [v.encode() for v in secrets if len(v) >= _MIN_SECRET]
    if captured.total > len(captured.kept):
        del captured.kept[len(captured.kept) - _partial(bytes(captured.kept), values, True) :]
    if captured.total > len(captured.tail):
        del captured.tail[: _partial(bytes(captured.tail), values, False)]


def _partial(data: bytes, secrets: list[bytes], at_end: bool) -> int:
    """The length of the longest piece of a secret that ``data`` ends (or begins) with."""
    longest = 0
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(data)), longest, -1):
            if data.endswith(secret[:size]) if at_end else data.startswith(secret[-size:]):
                longest = size
                break
    return longest


async def finish_reading(readers: list[asyncio.Task[None]], grace: float) -> bool:
    """Wait up to ``grace`` s for the readers to reach the end of their streams, then stop
    them (a program that exited may have left a child holding its output open). True if
    they all finished."""
    if not readers:
        return True
    _done, pending = await asyncio.wait(readers, timeout=grace)
    for reader in pending:
        reader.cancel()
    for reader in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return not pending


def command_config(call: NodeCall, kind: type[C]) -> C:
    config = call.config
    if not isinstance(config, kind):
        raise TypeError(f"a {kind.__name__} step got the config {type(config).__name__}")
    return config


def render_argv(command: list[str], context: Mapping[str, Any]) -> list[str]:
    """Each element rendered on its own: whatever it renders to, it stays one argument."""
    return [render_one(part, context, "command") for part in command]


def render_one(template: str, context: Mapping[str, Any], what: str) -> str:
    try:
        return render(template, context)
    except ExpressionError as exc:
        raise NodeFailed(f"bad input: {what}: {exc}", permanent=True) from exc


def kill_seconds(config: CommandAction, call: NodeCall) -> float:
    """The command's own timeout, or less when the action's deadline comes first."""
    return max(0.1, min(float(config.timeout), call.timeout))


@dataclass(slots=True)
class Outcome:
    """How a command ended. ``exit_code`` is None when it was killed or ended by a signal."""

    exit_code: int | None
    stdout: Captured
    stderr: Captured
    duration_ms: int
    signal: str | None = None
    killed_after: float | None = None
    ended: bool = True
    """False when the command may still run: the remote end never reported its end."""

    def outputs(self, **extra: Any) -> dict[str, Any]:
        outputs: dict[str, Any] = {
            **extra,
            "exit_code": self.exit_code,
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "duration_ms": self.duration_ms,
        }
        if self.signal is not None:
            outputs["signal"] = self.signal
        return outputs


def check_outcome(
    outcome: Outcome,
    config: CommandAction,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
) -> None:
    """Raise ``NodeFailed`` unless the command exited with one of ``success_exit_codes``."""
    tail = stderr_tail(outcome.stderr)
    if outcome.killed_after is not None:
        raise NodeFailed(
            f"killed after {outcome.killed_after:g} s (timeout){tail}",
            inputs=inputs,
            outputs=outputs,
        )
    if outcome.exit_code is None:
        raise NodeFailed(
            f"ended by signal {outcome.signal or 'unknown'}{tail}", inputs=inputs, outputs=outputs
        )
    if outcome.exit_code not in config.success_exit_codes:
        expected = ", ".join(map(str, config.success_exit_codes))
        raise NodeFailed(
            f"exit code {outcome.exit_code} (success: {expected}){tail}",
            inputs=inputs,
            outputs=outputs,
        )


def stderr_tail(stderr: Captured) -> str:
    """The last ``STDERR_TAIL`` bytes of stderr, for a failure's message."""
    text = bytes(stderr.tail).decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    more = "…" if stderr.total > len(stderr.tail) else ""
    return f"; stderr: {more}{text}"
