"""The ``ssh`` plugin: a command on a remote host, over OpenSSH's protocol (asyncssh).

Only hosts whose key is in ``ssh.known_hosts`` are accepted; the client key comes from
a declared secret. The argv is rendered element by element and quoted with
``shlex.join``, so the remote shell sees each element as exactly one argument. At the
timeout the remote command's process group gets TERM, then KILL (OpenSSH's ``signal``
channel request, sshd 7.9 and later), then the channel is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import asyncssh

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
from heal.plugins.commands.pool import ConnectionPool, Lease, Target
from heal.policy.executors import SshAction
from heal.policy.models import Policy, SshSettings

# Seconds between TERM and KILL, and after KILL for the remote end to confirm.
KILL_GRACE = 5.0
# Seconds to wait for the server to report the end of a command sent KILL, and again
# after closing its channel.
CONFIRM_GRACE = 2.0
# Seconds the output is still read after the remote command exited.
DRAIN_GRACE = 2.0
# Dead connections are noticed while a long command runs, not only at its timeout.
KEEPALIVE_INTERVAL = 15.0


@dataclass(slots=True)
class _Run:
    process: asyncssh.SSHClientProcess[bytes]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class SshPlugin:
    type = "ssh"

    def __init__(
        self,
        policy: Callable[[], Policy],
        *,
        pool: ConnectionPool | None = None,
        kill_grace: float = KILL_GRACE,
        drain_grace: float = DRAIN_GRACE,
        confirm_grace: float = CONFIRM_GRACE,
    ) -> None:
        self._policy = policy
        self.pool = pool or ConnectionPool()
        self.kill_grace = kill_grace
        self.drain_grace = drain_grace
        self.confirm_grace = confirm_grace
        self._keys: dict[str, tuple[str, asyncssh.SSHKey]] = {}
        self._running: dict[int, _Run] = {}

    @classmethod
    def from_context(cls, context: PluginContext) -> SshPlugin:
        return cls(context.policy)

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def cancel(self, call: NodeCall) -> str | None:
        """Stop the action's command if this process runs it (TERM, then KILL, as at its
        timeout); None if it does not."""
        run = self._running.get(call.action_id)
        if run is None:
            return None
        run.stop.set()
        return f"stopping the ssh command: TERM, then KILL after {self.kill_grace:g} s"

    async def run_node(self, call: NodeCall) -> NodeResult:
        config = command_config(call, SshAction)
        host = _host(render_one(config.host, call.context, "host"))
        username = render_one(config.username, call.context, "username").strip()
        argv = render_argv(config.command, call.context)
        inputs = {"host": host, "port": config.port, "username": username, "command": argv}
        if not username:
            raise NodeFailed("bad input: username rendered empty", inputs=inputs, permanent=True)
        settings = self._policy().ssh
        if not settings.known_hosts:
            raise NodeFailed(
                "ssh.known_hosts is not set: heal connects only to hosts whose key it knows",
                inputs=inputs,
                permanent=True,
            )
        key = self._key(config.key, call.secrets, inputs)
        target = Target(host, config.port, username, config.key)
        where = f"{username}@{host}:{config.port}"
        began = time.monotonic()
        lease = await self._lease(target, key, settings, where, inputs)
        process, lease = await self._start(lease, key, settings, where, inputs, argv)
        try:
            outcome = await self._follow(process, call, kill_seconds(config, call), began)
        finally:
            self.pool.release(lease)
        outputs = outcome.outputs(host=host)
        if not outcome.ended:
            raise NodeFailed(
                _unconfirmed(outcome, where),
                inputs=inputs,
                outputs=outputs,
                # Running it again while it may still run is only safe if the policy says so.
                permanent=not config.idempotent,
            )
        check_outcome(outcome, config, inputs, outputs)
        return NodeResult(inputs=inputs, outputs=outputs)

    # -- connecting ----------------------------------------------------------------------
    def _key(
        self, name: str, secrets: Mapping[str, str], inputs: dict[str, object]
    ) -> asyncssh.SSHKey:
        text = secrets.get(name)
        if not text:
            raise NodeFailed(
                f"the secret {name!r} (the ssh key) has no value", inputs=inputs, permanent=True
            )
        digest = hashlib.sha256(text.encode()).hexdigest()
        cached = self._keys.get(name)
        if cached is not None and cached[0] == digest:
            return cached[1]
        try:
            key = asyncssh.import_private_key(text)
        except (asyncssh.KeyImportError, ValueError) as exc:
            # The library's message names the format problem, never the key's content.
            raise NodeFailed(
                f"the secret {name!r} is not a usable private key (OpenSSH format, without "
                f"a passphrase): {exc}",
                inputs=inputs,
                permanent=True,
            ) from exc
        self._keys[name] = (digest, key)
        return key

    async def _lease(
        self,
        target: Target,
        key: asyncssh.SSHKey,
        settings: SshSettings,
        where: str,
        inputs: dict[str, object],
    ) -> Lease:
        try:
            return await self.pool.acquire(target, lambda: _connect(target, key, settings))
        except asyncssh.HostKeyNotVerifiable as exc:
            raise NodeFailed(
                f"the host key of {target.host}:{target.port} is not in {settings.known_hosts} "
                f"or does not match it: refused, nothing ran ({exc.reason})",
                inputs=inputs,
                permanent=True,
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise NodeFailed(
                f"{where} refused the key {target.key!r}: authentication failed, nothing ran",
                inputs=inputs,
                permanent=True,
            ) from exc
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise NodeFailed(
                f"the known_hosts file {settings.known_hosts} cannot be read: {exc.strerror}",
                inputs=inputs,
                permanent=True,
            ) from exc
        except TimeoutError as exc:
            raise NodeFailed(
                f"cannot connect to {where}: no answer within {settings.connect_timeout:g} s",
                inputs=inputs,
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise NodeFailed(f"cannot connect to {where}: {_describe(exc)}", inputs=inputs) from exc

    async def _start(
        self,
        lease: Lease,
        key: asyncssh.SSHKey,
        settings: SshSettings,
        where: str,
        inputs: dict[str, object],
        argv: list[str],
    ) -> tuple[asyncssh.SSHClientProcess[bytes], Lease]:
        """The remote command started, and the lease it runs on (the caller releases it).
        On a pooled connection the server has closed since, once more on a new one:
        nothing ran on the old."""
        command = shlex.join(argv)  # one element, one word: whatever an alert's label holds
        try:
            return await _open(lease.connection, command), lease
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            self.pool.release(lease)
            if not lease.reused:
                raise NodeFailed(
                    f"{where} did not start the command: {_describe(exc)}", inputs=inputs
                ) from exc
            self.pool.discard(lease)
        lease = await self._lease(lease.entry.target, key, settings, where, inputs)
        try:
            return await _open(lease.connection, command), lease
        except (asyncssh.ChannelOpenError, asyncssh.DisconnectError, OSError) as exc:
            self.pool.release(lease)
            raise NodeFailed(
                f"{where} did not start the command: {_describe(exc)}", inputs=inputs
            ) from exc

    # -- running -------------------------------------------------------------------------
    async def _follow(
        self,
        process: asyncssh.SSHClientProcess[bytes],
        call: NodeCall,
        limit: float,
        began: float,
    ) -> Outcome:
        stdout, stderr = Captured(), Captured()
        readers = [
            asyncio.create_task(capture(process.stdout, stdout)),
            asyncio.create_task(capture(process.stderr, stderr)),
        ]
        run = self._running[call.action_id] = _Run(process)
        killed_after: float | None = None
        try:
            if not await _closed_within(process, run.stop, limit):
                if not run.stop.is_set():
                    killed_after = limit
                await self._stop(process)
            await finish_reading(readers, self.drain_grace)
        except BaseException:  # cancelled: heal is stopping; leave nothing running behind
            _send(process, "KILL")
            process.close()
            for reader in readers:
                reader.cancel()
            raise
        finally:
            if self._running.get(call.action_id) is run:
                del self._running[call.action_id]
        for captured in (stdout, stderr):
            cut_secret_edges(captured, call.secrets.values())
        exit_signal = process.exit_signal
        return Outcome(
            exit_code=process.exit_status if exit_signal is None else None,
            stdout=stdout,
            stderr=stderr,
            duration_ms=round((time.monotonic() - began) * 1000),
            signal=exit_signal[0] if exit_signal else None,
            killed_after=killed_after,
            # Neither an exit status nor a signal: the connection dropped, or the server
            # ignored the signals and the channel was closed on it.
            ended=process.exit_status is not None or exit_signal is not None,
        )

    async def _stop(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """TERM, KILL after the grace, then close the channel whatever the server did."""
        for signal_name, wait in (("TERM", self.kill_grace), ("KILL", self.confirm_grace)):
            _send(process, signal_name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await process.wait_closed()
            if process.exit_status is not None or process.exit_signal is not None:
                return
        process.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.confirm_grace):
                await process.wait_closed()


async def _connect(
    target: Target, key: asyncssh.SSHKey, settings: SshSettings
) -> asyncssh.SSHClientConnection:
    """Key authentication only, host keys from known_hosts only; nothing from ~/.ssh, the
    agent or an OpenSSH client config is used."""
    return await asyncssh.connect(
        target.host,
        target.port,
        username=target.username,
        client_keys=[key],
        known_hosts=settings.known_hosts,
        connect_timeout=settings.connect_timeout,
        keepalive_interval=KEEPALIVE_INTERVAL,
        config=None,
        agent_path=None,
        password=None,
        preferred_auth="publickey",
        x509_trusted_certs=None,
    )


async def _open(
    connection: asyncssh.SSHClientConnection, command: str
) -> asyncssh.SSHClientProcess[bytes]:
    process: asyncssh.SSHClientProcess[bytes] = await connection.create_process(
        command, stdin=asyncssh.DEVNULL, encoding=None
    )
    return process


async def _closed_within(
    process: asyncssh.SSHClientProcess[bytes], stop: asyncio.Event, limit: float
) -> bool:
    """True if the remote command ended (or the connection dropped) within ``limit`` s."""
    closed = asyncio.create_task(process.wait_closed())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({closed, stopped}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        stopped.cancel()
    return closed.done() and not closed.cancelled() and not stop.is_set()


def _unconfirmed(outcome: Outcome, where: str) -> str:
    if outcome.killed_after is not None:
        return (
            f"killed after {outcome.killed_after:g} s (timeout), but {where} did not report "
            "the command's end: it may still be running (sshd signals only sessions that "
            "are not root's, from OpenSSH 7.9)"
        )
    return (
        f"the connection to {where} was lost while the command ran; whether it finished is unknown"
    )


def _send(process: asyncssh.SSHClientProcess[bytes], signal_name: str) -> None:
    with contextlib.suppress(OSError):  # the channel closed meanwhile
        process.send_signal(signal_name)


def _host(rendered: str) -> str:
    """The rendered host, as asyncssh takes it; an instance label's port is refused, as
    connecting to another port than ``port`` would surprise."""
    host = rendered.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [2001:db8::1]
    if not host or any(c.isspace() for c in host):
        raise NodeFailed(f"bad input: host {rendered!r} is not a host name", permanent=True)
    if host.count(":") == 1:
        name = host.split(":")[0]
        raise NodeFailed(
            f"bad input: host {host!r} has a port in it; write the port under port: and "
            f"take the name alone (e.g. {{{{ alert.labels.instance.split(':')[0] }}}} gives "
            f"{name!r})",
            permanent=True,
        )
    return host


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
