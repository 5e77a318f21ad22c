"""The few kubectl command lines heal understands, read into a kubernetes operation.

An operator (or a runbook) may write a remediation the way they would type it:
``kubectl rollout restart deployment/checkout -n shop``. Only these forms are accepted,
each into the same :class:`KubectlOperation` a ``type: kubernetes`` action is built from:

- ``kubectl rollout restart KIND/NAME -n NS``
- ``kubectl rollout undo KIND/NAME [--to-revision=N] -n NS``
- ``kubectl scale KIND/NAME --replicas=N -n NS`` (not a DaemonSet)

KIND is deployment, statefulset or daemonset (or kubectl's short and plural names);
``-n NS``, ``-n=NS``, ``--namespace NS`` and ``--namespace=NS`` all give the namespace,
which is required. Nothing is ever run through a shell: a line holding a shell
metacharacter, any other verb, flag or argument is rejected, with why. Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["Deployment", "StatefulSet", "DaemonSet"]
Operation = Literal["restart", "scale", "rollback"]

_KINDS: dict[str, Kind] = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "deployment.apps": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
    "statefulset.apps": "StatefulSet",
    "daemonset": "DaemonSet",
    "daemonsets": "DaemonSet",
    "ds": "DaemonSet",
    "daemonset.apps": "DaemonSet",
}
# Anything a shell would act on: the line is refused whole rather than "cleaned".
_SHELL = re.compile(r"[;&|`$<>()\\'\"*?!{}\[\]#~\n\r]")
# RFC 1123: what Kubernetes itself accepts for a namespace (label) and a workload (subdomain).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_COUNT = re.compile(r"^[0-9]{1,6}$")


class KubectlRejected(ValueError):
    """The command line is not one of the accepted forms; the message says why."""


@dataclass(frozen=True, slots=True)
class KubectlOperation:
    """One workload operation, as a ``type: kubernetes`` action's keys describe it."""

    operation: Operation
    kind: Kind
    name: str
    namespace: str
    replicas: int | None = None
    to_revision: int | None = None

    def action_fields(self) -> dict[str, Any]:
        """The keys of a ``type: kubernetes`` action doing this. A scale's bounds are the
        one count the command asked for: nothing else can be rendered into it."""
        fields: dict[str, Any] = {
            "type": "kubernetes",
            "operation": self.operation,
            "target": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
        }
        if self.replicas is not None:
            fields["replicas"] = self.replicas
            fields["bounds"] = {"min": self.replicas, "max": self.replicas}
        if self.to_revision is not None:
            fields["to_revision"] = self.to_revision
        return fields


def parse(command: str | Sequence[str]) -> KubectlOperation:
    """Read one accepted kubectl command line (a string, or its argv); raises
    :class:`KubectlRejected` naming what is not accepted."""
    words = _words(command)
    if not words or words[0] != "kubectl":
        raise KubectlRejected("only kubectl commands are understood (the line must start kubectl)")
    verb = words[1:3]
    if verb[:1] == ["scale"]:
        return _scale(words[2:])
    if verb == ["rollout", "restart"]:
        return _rollout("restart", words[3:])
    if verb == ["rollout", "undo"]:
        return _rollout("rollback", words[3:])
    shown = " ".join(words[1:3]) or "nothing"
    raise KubectlRejected(
        f"kubectl {shown} is not allowed: only rollout restart, rollout undo and scale are"
    )


def _words(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        found = _SHELL.search(command)
        if found:
            raise KubectlRejected(
                f"shell metacharacter {found.group()!r} is not allowed: no shell runs this"
            )
        return command.split()
    words = list(command)
    for word in words:
        found = _SHELL.search(word)
        if found or not word or word != word.strip() or " " in word or "\t" in word:
            shown = found.group() if found else "whitespace"
            raise KubectlRejected(f"argument {word!r} holds {shown!r}, which is not allowed")
    return words


@dataclass(slots=True)
class _Flags:
    namespace: str | None = None
    replicas: str | None = None
    to_revision: str | None = None


_FLAG_NAMES = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--replicas": "replicas",
    "--to-revision": "to_revision",
}


def _split(args: list[str], allowed: set[str]) -> tuple[list[str], _Flags]:
    """Positional arguments and the allowed flags' values; any other flag is refused."""
    positional: list[str] = []
    flags = _Flags()
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if not equals and name.startswith("-n") and not name.startswith("--") and name != "-n":
            name, value, equals = "-n", name[2:], "="  # kubectl's -nNS
        attribute = _FLAG_NAMES.get(name)
        if attribute is None or attribute not in allowed:
            raise KubectlRejected(f"flag {name} is not allowed here")
        if not equals:
            value = next(rest, "")
            if not value or value.startswith("-"):
                raise KubectlRejected(f"flag {name} needs a value")
        if getattr(flags, attribute) is not None:
            raise KubectlRejected(f"flag {name} is given twice")
        setattr(flags, attribute, value)
    return positional, flags


def _workload(positional: list[str], verb: str) -> tuple[Kind, str]:
    if len(positional) != 1:
        raise KubectlRejected(f"{verb} takes exactly one KIND/NAME, got {len(positional)}")
    kind_text, slash, name = positional[0].partition("/")
    if not slash:
        raise KubectlRejected(f"write the workload as KIND/NAME, not {positional[0]!r}")
    kind = _KINDS.get(kind_text.lower())
    if kind is None:
        raise KubectlRejected(
            f"kind {kind_text!r} is not allowed: only deployment, statefulset and daemonset"
        )
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise KubectlRejected(f"{name!r} is not a valid workload name")
    return kind, name


def _namespace(flags: _Flags) -> str:
    namespace = flags.namespace
    if namespace is None:
        raise KubectlRejected("the namespace is required: add -n NAMESPACE")
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise KubectlRejected(f"{namespace!r} is not a valid namespace")
    return namespace


def _count(value: str, flag: str, least: int) -> int:
    if not _COUNT.match(value) or int(value) < least:
        raise KubectlRejected(f"{flag} must be a whole number of at least {least}, not {value!r}")
    return int(value)


def _rollout(operation: Operation, args: list[str]) -> KubectlOperation:
    verb = "rollout restart" if operation == "restart" else "rollout undo"
    allowed = {"namespace", "to_revision"} if operation == "rollback" else {"namespace"}
    positional, flags = _split(args, allowed)
    kind, name = _workload(positional, verb)
    revision = None
    if flags.to_revision is not None:
        revision = _count(flags.to_revision, "--to-revision", 0) or None  # 0: the previous
    return KubectlOperation(operation, kind, name, _namespace(flags), to_revision=revision)


def _scale(args: list[str]) -> KubectlOperation:
    positional, flags = _split(args, {"namespace", "replicas"})
    kind, name = _workload(positional, "scale")
    if kind == "DaemonSet":
        raise KubectlRejected("a DaemonSet has no replicas to scale")
    if flags.replicas is None:
        raise KubectlRejected("scale needs --replicas=N")
    replicas = _count(flags.replicas, "--replicas", 0)
    return KubectlOperation("scale", kind, name, _namespace(flags), replicas=replicas)
