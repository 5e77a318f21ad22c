"""A real OpenSSH server for the ssh plugin's tests (import the ``sshd`` fixture).

sshd runs in the foreground on a free port of 127.0.0.1 as the current user, with its
own host key, key authentication only, and a log the tests read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
KEYGEN = shutil.which("ssh-keygen")


@dataclass(frozen=True, slots=True)
class SshServer:
    host: str
    port: int
    root: Path
    known_hosts: Path
    """A known_hosts file with this server's host key."""
    client_key: str
    """The private key sshd accepts (OpenSSH format)."""
    other_key: str
    """A private key sshd does not accept."""
    other_host_key_line: str
    """A known_hosts line naming this server with another host's key."""
    log: Path

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


def _keygen(path: Path) -> None:
    assert KEYGEN is not None
    subprocess.run(
        [KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"sshd did not listen on {port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not SSHD.is_file() or KEYGEN is None:
        pytest.skip("OpenSSH's sshd is not installed (apt-get install -y openssh-server)")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "other_host_key", "client_key", "other_key"):
        _keygen(root / name)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/host_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
LogLevel VERBOSE
"""
    )
    host_key = (root / "host_key.pub").read_text().split()
    other_host_key = (root / "other_host_key.pub").read_text().split()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    log = root / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_file, stderr=log_file
        )
    try:
        _wait_listening(process, port, log)
        yield SshServer(
            host="127.0.0.1",
            port=port,
            root=root,
            known_hosts=known_hosts,
            client_key=(root / "client_key").read_text(),
            other_key=(root / "other_key").read_text(),
            other_host_key_line=f"[127.0.0.1]:{port} {other_host_key[0]} {other_host_key[1]}\n",
            log=log,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
