"""Run heal as real processes (``python -m heal …``) for crash and multi-process tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from helpers import SERVICE_TOKENS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HealProcess:
    """``heal serve`` (with a port) or ``heal worker``, logging to a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.port = free_port() if args[0] == "serve" else None
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "HEAL_API_TOKENS": SERVICE_TOKENS,
            "HEAL_TEST_ITSM_TOKEN": "unused-token",
            **env,
        }
        argv = [sys.executable, "-m", "heal", *args]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            argv, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    async def ready(self, client: httpx.AsyncClient) -> None:
        for _ in range(300):
            if self.process.poll() is not None:
                raise AssertionError(f"heal exited with {self.process.returncode}")
            try:
                if (await client.get(f"{self.url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("heal did not become ready")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
