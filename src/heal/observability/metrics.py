"""Prometheus metrics (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS_RECEIVED = Counter("heal_alerts_received_total", "Alert notifications received", ["source"])
ALERTS_DEDUPLICATED = Counter(
    "heal_alerts_deduplicated_total", "Alert notifications dropped as duplicates", ["source"]
)
INGEST_REJECTED = Counter(
    "heal_ingest_rejected_total", "Alert batches refused (overload or bad input)", ["reason"]
)
INCIDENTS_OPENED = Counter("heal_incidents_opened_total", "Incidents opened")
# `rule` and `action` are names from the policy, so their number is bounded; alert labels
# and ids never become metric labels.
ACTION_STATUS = Counter(
    "heal_action_status_total",
    "Action status changes, by the status entered",
    ["status", "rule", "action"],
)
# The verdict of a verified action (verify:): verified, ineffective or relapsed.
ACTION_OUTCOMES = Counter(
    "heal_action_outcomes_total",
    "Verdicts on whether a successful action fixed its incident, by outcome",
    ["outcome", "rule", "action"],
)
# What the safety governors decided about an action: governor is concurrency, limit,
# budget, breaker or freeze; outcome is delayed, cancelled, blocked or approval (it must
# wait for people). A delayed action counts once, at its first delay, not at each recheck.
GOVERNOR_DECISIONS = Counter(
    "heal_governor_decisions_total",
    "Actions a safety governor delayed, cancelled, blocked or sent for approval",
    ["governor", "outcome"],
)
BREAKERS_OPENED = Counter(
    "heal_breakers_opened_total", "Circuit breakers opened by failures", ["action"]
)
WAKE_LATENESS = Histogram(
    "heal_wake_lateness_seconds",
    "How long after it was due a wake started",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NODE_LATENCY = Histogram(
    "heal_node_duration_seconds",
    "Time to run one node (the remote call included)",
    ["plugin", "outcome", "rule", "action"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STALE_WAKES = Counter(
    "heal_stale_wakes_total", "Wakes or results discarded because the action had moved on"
)
# Deciding: the verdict of each decision, and each tier's time and answer.
DECISIONS = Counter(
    "heal_decisions_total",
    "Decisions recorded, by the state they ended analysis in and the winning tier",
    ["state", "tier", "rule"],
)
DECISION_TIER_SECONDS = Histogram(
    "heal_decision_tier_seconds",
    "Time one decision tier took, by tier and answer (proposed, rejected, skipped)",
    ["tier", "answer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
