"""Playbooks: what verifiably fixed the same symptoms before, as pure rules.

A **signature** says what an incident looks like, independent of which pod or host it
hit: the alert's name, its severity and its *stable* labels. A label is dropped as
volatile when

* its name is one of ``VOLATILE_LABELS`` (pod, instance, container ids, IPs, ...), or
* its name is not one of ``STABLE_LABELS`` *and* its value looks generated: an IP address,
  a UUID, a long hex id, or a name ending in a Kubernetes pod hash
  (``checkout-7d9f8b6c4-x2x9z``).

Stable labels (namespace, service, the workload's kind and name, cluster, ...) are always
kept, whatever their value, and their workload names are reduced to the workload (a
ReplicaSet's or a pod's hash suffix is cut off). Everything else of a reasonable value is
kept: operators add labels that matter, and a label they do not want must vary to be
ignored, which the value rule catches.

**Similarity** of two signatures is in [0, 1]: 1 for the same key, else
``LABEL_WEIGHT`` times a weighted Jaccard over their labels (alertname weighs most, then
the stable labels, then the rest) plus ``TEXT_WEIGHT`` times the fuzzy likeness of their
annotation text (rapidfuzz ``token_set_ratio``). With the default 0.85 threshold and the
same text, a signature that differs in one minor label (or lacks one) still matches, one
whose workload, namespace or other stable label differs does not: a different workload is a
different incident. The tier only compares playbooks of the same alert name.

**Ranking** puts exact signatures first, then the similar ones (at or above the
threshold), each by the Wilson lower bound of their verified success rate, then by
similarity, then by how recently they were used.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from rapidfuzz import fuzz


class PlaybookStatus(StrEnum):
    DRAFT = "draft"
    """Learned from an effective fix; a person must approve it before it is proposed."""
    APPROVED = "approved"
    """Proposed by the playbook tier when its signature matches."""
    DEPRECATED = "deprecated"
    """Kept for the record and its stats; never proposed."""


# Labels always kept, whatever their value: they say *what* is broken.
STABLE_LABELS = frozenset(
    {
        "alertname",
        "severity",
        "namespace",
        "service",
        "job",
        "cluster",
        "env",
        "environment",
        "region",
        "zone",
        "team",
        "app",
        "app_kubernetes_io_name",
        "component",
        "workload",
        "deployment",
        "statefulset",
        "daemonset",
        "replicaset",
        "cronjob",
        "job_name",
        "container",
        "persistentvolumeclaim",
        "node_pool",
    }
)
# Labels always dropped: they say *where* it happened this time.
VOLATILE_LABELS = frozenset(
    {
        "pod",
        "pod_name",
        "instance",
        "container_id",
        "image_id",
        "uid",
        "pod_uid",
        "pod_ip",
        "host_ip",
        "ip",
        "node",
        "hostname",
        "host",
        "endpoint",
        "prometheus",
        "prometheus_replica",
        "receive",
        "replica",
        "id",
        "fingerprint",
        "le",
    }
)
# Stable labels that name a workload: a pod's or ReplicaSet's hash suffix is cut off.
WORKLOAD_LABELS = frozenset({"workload", "deployment", "replicaset", "statefulset", "daemonset"})
MAX_LABEL_VALUE = 200

_IP = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:]*:[0-9a-f]*)(:\d+)?$", re.I)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_HEX_ID = re.compile(r"^([a-z0-9]+://)?[0-9a-f]{12,}$", re.IGNORECASE)
# Kubernetes' generated suffixes use an alphabet without vowels (so they never spell a
# word): a ReplicaSet's pod-template hash (6-10 characters), then a pod's 5.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_NAME = r"(?P<base>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
_POD_OF_REPLICASET = re.compile(rf"^{_NAME}-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
_REPLICASET = re.compile(rf"^{_NAME}-{_SAFE}{{6,10}}$")
_POD = re.compile(rf"^{_NAME}-{_SAFE}{{5}}$")

ALERTNAME_WEIGHT = 4.0
SEVERITY_WEIGHT = 1.0
STABLE_WEIGHT = 2.0
OTHER_WEIGHT = 1.0
LABEL_WEIGHT = 0.7
TEXT_WEIGHT = 0.3
WILSON_Z = 1.959963984540054  # 95 %


def is_volatile_value(value: str) -> bool:
    """Whether a value looks generated per occurrence (an address, an id, a pod's name)."""
    return bool(
        len(value) > MAX_LABEL_VALUE
        or _IP.match(value)
        or _UUID.match(value)
        or _HEX_ID.match(value)
        or _POD_OF_REPLICASET.match(value)
    )


def workload_name(value: str) -> str:
    """A workload's name without a pod's or ReplicaSet's hash suffix."""
    for pattern in (_POD_OF_REPLICASET, _REPLICASET, _POD):
        found = pattern.match(value)
        if found:
            return found.group("base")
    return value


def stable_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels a signature keeps, by the rule of the module's docstring."""
    kept: dict[str, str] = {}
    for name, raw in labels.items():
        value = str(raw)
        if name in VOLATILE_LABELS:
            continue
        if name in STABLE_LABELS:
            kept[name] = workload_name(value) if name in WORKLOAD_LABELS else value
        elif not is_volatile_value(value):
            kept[name] = value
    return kept


@dataclass(frozen=True, slots=True)
class Signature:
    """What an incident's symptoms look like: alertname, severity and stable labels."""

    alertname: str
    severity: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable hash of the signature: equal signatures, equal keys."""
        canonical = json.dumps(self.as_record(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def as_record(self) -> dict[str, object]:
        return {
            "alertname": self.alertname,
            "severity": self.severity,
            "labels": dict(sorted(self.labels.items())),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Signature:
        labels = record.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ValueError("a signature's labels are a mapping")
        return cls(
            str(record.get("alertname") or ""),
            str(record.get("severity") or ""),
            {str(k): str(v) for k, v in labels.items()},
        )


def signature_of(
    labels: Mapping[str, str], severity: str | None = None, name: str | None = None
) -> Signature:
    """The signature of an alert: ``name`` (else its alertname label), ``severity`` (else
    its severity label), and its stable labels other than those two."""
    kept = stable_labels(labels)
    alertname = name if name is not None else kept.get("alertname", "")
    sev = severity if severity else kept.get("severity", "")
    rest = {k: v for k, v in kept.items() if k not in ("alertname", "severity")}
    return Signature(alertname, sev, rest)


def annotation_text(annotations: Mapping[str, str]) -> str:
    """The annotation text fuzzy matching compares: summary and description first."""
    first = [str(annotations[k]) for k in ("summary", "description") if annotations.get(k)]
    rest = [str(v) for k, v in sorted(annotations.items()) if k not in ("summary", "description")]
    return " ".join([*first, *rest])[:2000]


def _item_weight(name: str) -> float:
    if name == "alertname":
        return ALERTNAME_WEIGHT
    if name == "severity":
        return SEVERITY_WEIGHT
    return STABLE_WEIGHT if name in STABLE_LABELS else OTHER_WEIGHT


@dataclass(frozen=True, slots=True)
class Symptoms:
    """A signature and its annotation text, ready to compare many times (the tier keeps
    these for the playbooks it reads)."""

    key: str
    items: frozenset[tuple[str, str]]
    weight: float
    text: str

    @classmethod
    def of(cls, signature: Signature, text: str) -> Symptoms:
        items = frozenset(
            {
                ("alertname", signature.alertname),
                ("severity", signature.severity),
                *signature.labels.items(),
            }
        )
        return cls(signature.key, items, sum(_item_weight(n) for n, _ in items), text)


def label_similarity(a: Signature, b: Signature) -> float:
    """Weighted Jaccard of the two signatures' items (alertname and severity included)."""
    return _weighted_jaccard(Symptoms.of(a, ""), Symptoms.of(b, ""))


def _weighted_jaccard(a: Symptoms, b: Symptoms) -> float:
    small, large = (a.items, b.items) if len(a.items) <= len(b.items) else (b.items, a.items)
    shared = sum(_item_weight(name) for name, value in small if (name, value) in large)
    union = a.weight + b.weight - shared
    return 1.0 if union == 0 else shared / union


def text_similarity(a: str, b: str) -> float:
    """Fuzzy likeness of two annotation texts in [0, 1]; two empty texts are alike."""
    if not a and not b:
        return 1.0
    # token_set_ratio ignores word order and repetition, not the words.
    return float(fuzz.token_set_ratio(a, b, processor=str.lower)) / 100.0


def similarity(a: Signature, text_a: str, b: Signature, text_b: str) -> float:
    """How alike two incidents' symptoms are, in [0, 1]; the same signature is 1."""
    return symptoms_similarity(Symptoms.of(a, text_a), Symptoms.of(b, text_b))


def symptoms_similarity(a: Symptoms, b: Symptoms) -> float:
    if a.key == b.key:
        return 1.0
    score = LABEL_WEIGHT * _weighted_jaccard(a, b) + TEXT_WEIGHT * text_similarity(a.text, b.text)
    # Only an exact signature is 1: ranking relies on it.
    return min(max(score, 0.0), math.nextafter(1.0, 0.0))


def wilson_lower_bound(successes: int, runs: int, z: float = WILSON_Z) -> float:
    """The lower bound of the Wilson score interval of ``successes`` in ``runs`` (95 %).

    0 for no runs: an untried playbook has shown nothing. It never exceeds the observed
    rate and grows with every success, so a playbook with 9 of 10 outranks one with 1 of 1.
    """
    if runs <= 0:
        return 0.0
    successes = min(max(successes, 0), runs)
    p = successes / runs
    z2 = z * z
    centre = p + z2 / (2 * runs)
    margin = z * math.sqrt(p * (1 - p) / runs + z2 / (4 * runs * runs))
    bound = (centre - margin) / (1 + z2 / runs)
    return min(max(bound, 0.0), p)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A playbook as ranking sees it."""

    playbook_id: int
    similarity: float
    lower_bound: float
    last_used_at: datetime | None = None

    @property
    def exact(self) -> bool:
        return self.similarity >= 1.0


def _rank_key(candidate: Candidate) -> tuple[bool, float, float, float, int]:
    used = candidate.last_used_at.timestamp() if candidate.last_used_at else float("-inf")
    # Sorted ascending: negate what ranks higher when larger; the id breaks the last tie.
    return (
        not candidate.exact,
        -candidate.lower_bound,
        -candidate.similarity,
        -used,
        candidate.playbook_id,
    )


def rank(candidates: Iterable[Candidate], min_similarity: float) -> list[Candidate]:
    """Exact signatures first, then those at least ``min_similarity`` alike; within each,
    by lower bound, then similarity, then the most recently used."""
    kept = [c for c in candidates if c.exact or c.similarity >= min_similarity]
    return sorted(kept, key=_rank_key)


def best(candidates: Sequence[Candidate], min_similarity: float) -> Candidate | None:
    ranked = rank(candidates, min_similarity)
    return ranked[0] if ranked else None


def mean_update(mean: float | None, count: int, value: float) -> float:
    """The mean after adding ``value`` as the ``count``-th sample (count >= 1)."""
    if mean is None or count <= 1:
        return value
    return mean + (value - mean) / count


def params_key(params: Mapping[str, object]) -> str:
    """A stable hash of an action's params: a playbook is one per signature, action, params."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def playbook_lower_bound(verified_successes: int, runs: int, rejections: int) -> float:
    """A playbook's ranking figure: a rejection of its proposal by people counts as a run
    that failed (people judged it would not fix this), so rejections lower the bound."""
    return wilson_lower_bound(verified_successes, runs + rejections)
