"""Child processes (heal's server, the fake ITSM): start, wait until ready, always stop.

Every child is registered, and stopped by ``atexit`` as a last resort; on Linux a child also
gets SIGTERM if the bench process dies without cleaning up (``PR_SET_PDEATHSIG``).
Children run in sessions of their own, so Ctrl+C interrupts the bench, which stops them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
_CHILDREN: list[Child] = []


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """``python -m <module> ... --port-file F``; the module writes its port to F when ready."""

    def __init__(self, name: str, module: str, args: list[str], workdir: Path, **env: str) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.port_file = workdir / f"{name}.port"
        self.argv = [sys.executable, "-m", module, *args, "--port-file", str(self.port_file)]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._ps: psutil.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> Child:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Not in the terminal's process group: Ctrl+C reaches the bench only, which
                # then stops its children in order rather than racing them.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        _CHILDREN.append(self)
        deadline = time.monotonic() + timeout
        while not self.port_file.exists() or not self.port_file.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:g} s:\n{self.tail()}")
            await asyncio.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())
        self._ps = psutil.Process(self.proc.pid)
        self._ps.cpu_percent()  # start the CPU counter
        return self

    def rss(self) -> int:
        try:
            return self._ps.memory_info().rss if self._ps else 0
        except psutil.Error:
            return 0

    def cpu_times(self) -> float:
        """User + system CPU seconds used so far (all threads)."""
        try:
            times = self._ps.cpu_times() if self._ps else None
        except psutil.Error:
            return 0.0
        return (times.user + times.system) if times else 0.0

    def main_thread_cpu_times(self) -> float:
        """CPU seconds of the main thread alone (the event loop's)."""
        try:
            threads = self._ps.threads() if self._ps else []
        except psutil.Error:
            return 0.0
        for thread in threads:
            if thread.id == self.pid:
                return thread.user_time + thread.system_time
        return 0.0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on SIGTERM
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        with contextlib.suppress(ValueError):
            _CHILDREN.remove(self)


def stop_all() -> None:
    for child in list(_CHILDREN):
        child.stop(grace=5.0)


atexit.register(stop_all)


def run(main: Coroutine[Any, Any, None], loop: str = "auto") -> None:
    """Run a server's coroutine on the event loop ``uvicorn.run`` would pick ("auto": uvloop).

    Servers here bind their own socket, created with ``IPPROTO_TCP``: asyncio only sets
    TCP_NODELAY on accepted connections whose listening socket says so, and without it every
    response written in two parts (headers, then body) waits ~40 ms for a delayed ACK.
    """
    factory = None
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def install_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop the children."""

    def _raise(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
