"""A real OpenSSH server for the ssh plugin's tests (``running_sshd``, for a fixture).

sshd runs in the foreground on a free port of 127.0.0.1 with its own host key, key
authentication only, and a log the tests read. Commands log in as an ordinary user:
sshd delivers the signals of a timeout only to sessions that are not root's (a root
session has no privilege-separated child). Under root the fixture creates that user
(``heal-ssh-test``, a system user without a home); otherwise sshd runs as, and logs in,
the current user.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
KEYGEN = shutil.which("ssh-keygen")
TEST_USER = "heal-ssh-test"
USERADD, USERMOD = "/usr/sbin/useradd", "/usr/sbin/usermod"


@dataclass(frozen=True, slots=True)
class SshServer:
    host: str
    port: int
    username: str
    """A user who may log in with ``client_key`` (not root)."""
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

    def scratch(self, name: str) -> Path:
        """A directory the remote user may write to."""
        path = self.root / "scratch" / name
        path.mkdir(parents=True)
        path.chmod(0o777)
        return path


def _keygen(path: Path) -> None:
    assert KEYGEN is not None
    subprocess.run(
        [KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )


def _login_user() -> str:
    if os.geteuid() != 0:
        return getpass.getuser()
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        useradd = [USERADD, "--system", "--no-create-home", "--home-dir", "/tmp"]
        subprocess.run([*useradd, "--shell", "/bin/sh", TEST_USER], check=True)
    # No password at all, rather than useradd's "!": sshd refuses a locked account even
    # for key logins.
    subprocess.run([USERMOD, "--password", "*", TEST_USER], check=True)
    return TEST_USER


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


def running_sshd() -> Iterator[SshServer]:
    """Yields the running server, and stops it (skips the test if sshd is missing)."""
    if not SSHD.is_file() or KEYGEN is None:
        missing = "OpenSSH's sshd is not installed (apt-get install -y openssh-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI needs it (.ci/run installs it)")
        pytest.skip(missing)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
    username = _login_user()
    # Not under pytest's tmp dir: the login user must read authorized_keys and write
    # the scratch directories.
    root = Path(tempfile.mkdtemp(prefix="heal-sshd-"))
    root.chmod(0o755)
    try:
        yield from _serve(root, username)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _serve(root: Path, username: str) -> Iterator[SshServer]:
    for name in ("host_key", "other_host_key", "client_key", "other_key"):
        _keygen(root / name)
    authorized = root / "authorized_keys"
    authorized.write_text((root / "client_key.pub").read_text())
    authorized.chmod(0o644)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/host_key
PidFile {root}/sshd.pid
AuthorizedKeysFile {authorized}
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
            username=username,
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
