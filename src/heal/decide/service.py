"""Running decisions: claim one, try its tiers outside any transaction, then commit the
verdict and the chosen action together.

A decision is a row (``store.decisions_repo``), opened by ingest in the transaction of the
alert that matched a deciding rule. Right after that commit the ingesting process starts
it (:meth:`DecisionService.started`); the sweep starts any that nobody holds (never started,
or their process died: the lease ran out). Whoever runs it claims the row first, so two
processes never decide twice, and records the verdict only if its claim still stands, so a
late runner changes nothing. Past the decision's deadline only the expert rules are asked:
they answer at once and never fail, so a decision always ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from heal.decide import expert
from heal.decide.tiers import DecisionInput, Tier, TierAnswer
from heal.domain.actions import ActionStatus, Signal
from heal.domain.decisions import (
    DecisionState,
    Proposal,
    TierAttempt,
    TierName,
    proposal_record,
)
from heal.domain.redaction import Redactor
from heal.domain.timeline import EventKind
from heal.engine.create import incident_context
from heal.engine.engine import utcnow
from heal.engine.interfaces import WakeScheduler
from heal.ingest.create import NewAction, create_action
from heal.observability import metrics
from heal.observability.logging import get_logger
from heal.policy.models import ActionBase, Policy, effective_verify
from heal.policy.params import ParamsRejected, validate_params
from heal.policy.ruleset import RuleSet
from heal.store import alerts_repo, decisions_repo, incidents_repo, timeline_repo
from heal.store.db import Database

log = get_logger("heal.decide")
# A claim outlives the longest budget (300 s) with room to commit; it only runs out when
# its holder died.
LEASE_MARGIN = timedelta(seconds=60)
SWEEP_BATCH = 100

Tiers = Callable[[Policy], Sequence[Tier]]


def no_tiers(policy: Policy) -> Sequence[Tier]:
    """Only the expert rules (which the service always asks last)."""
    return ()


class DecisionService:
    def __init__(
        self,
        database: Database,
        scheduler: WakeScheduler,
        rules: Callable[[], RuleSet],
        tiers: Tiers = no_tiers,
        redact: Redactor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = database
        self.scheduler = scheduler
        self.rules = rules
        self.tiers = tiers
        self.redact = redact or Redactor()
        self.clock = clock
        self._tasks: set[asyncio.Task[DecisionState | None]] = set()

    # -- starting ------------------------------------------------------------------------
    def started(self, decision_ids: Iterable[int]) -> None:
        """Run these decisions now, in this process (after the commit that opened them)."""
        for decision_id in decision_ids:
            task = asyncio.create_task(self.run(decision_id), name=f"heal-decision-{decision_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def sweep(self, batch: int = SWEEP_BATCH) -> int:
        """Start the open decisions nobody holds; how many were started."""
        async with self.db.read() as connection:
            ids = await decisions_repo.unclaimed(connection, self.clock(), batch)
        if ids:
            log.info("starting decisions nobody was running", count=len(ids))
            self.started(ids)
        return len(ids)

    async def drain(self, grace: float | None = None) -> None:
        """Wait for the decisions this process is running, at most ``grace`` seconds; the
        rest are cancelled (their rows stay open and the sweep finds them)."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- one decision --------------------------------------------------------------------
    async def run(self, decision_id: int) -> DecisionState | None:
        """Decide, unless another process holds the decision or it is decided: the state
        it ended in, or None when this call did nothing."""
        now = self.clock()
        policy = self.rules().policy
        lease = timedelta(seconds=policy.decide.budget) + LEASE_MARGIN
        async with self.db.write() as connection:
            row = await decisions_repo.claim(connection, decision_id, now, now + lease)
        if row is None:
            return None
        try:
            request = await self._input(row, policy)
            if isinstance(request, str):
                return await self._record(row, [], None, request)
            left = (row["deadline_at"] - now).total_seconds()
            tiers = self.tiers(policy)
            deadline = time.monotonic() + left
            attempts, winner = await try_tiers(tiers, request, deadline, in_time=left > 0)
            return await self._record(row, attempts, winner, None, request)
        except Exception:
            # Nothing was committed: the claim runs out and the sweep tries again.
            log.exception("deciding failed; the sweep tries again", decision_id=decision_id)
            return None

    async def _input(self, row: dict[str, Any], policy: Policy) -> DecisionInput | str:
        """What the tiers look at, or why the decision cannot be made at all."""
        async with self.db.read() as connection:
            incident = await incidents_repo.get(connection, row["incident_id"])
            alerts = await alerts_repo.for_incident(connection, row["incident_id"])
        if incident is None:
            return f"incident #{row['incident_id']} is gone"
        return build_input(row["id"], row["rule"], incident, alerts, row["alert_id"], policy)

    async def _record(
        self,
        row: dict[str, Any],
        attempts: list[TierAttempt],
        winner: Proposal | None,
        error: str | None,
        request: DecisionInput | None = None,
    ) -> DecisionState | None:
        """The verdict and its action, in one commit, if the claim still stands."""
        now = self.clock()
        state = DecisionState.ERROR if winner is None else DecisionState.READY
        if winner is None and error is None:
            error = f"no tier proposed an allowed action: {rejections(attempts)}"
        async with self.db.write() as connection:
            recorded = await decisions_repo.finish(
                connection,
                row["id"],
                row["version"],
                {
                    "state": state.value,
                    "attempts": [a.as_record() for a in attempts],
                    "tier": winner.tier.value if winner else None,
                    "proposal": proposal_record(winner) if winner else None,
                    "error": error,
                    "updated_at": now,
                },
            )
            if not recorded:
                log.info("a decision was recorded meanwhile; dropping this run", id=row["id"])
                return None
            notes = _Notes(row["incident_id"], now)
            for attempt in attempts:
                notes.tier(row["id"], attempt)
            if winner is not None and request is not None:
                await self._create(connection, row, request, winner, notes, now)
            else:
                notes.add(
                    EventKind.DECISION_FAILED,
                    f"decision #{row['id']} failed: {error}",
                    decision_id=row["id"],
                )
            await timeline_repo.append_rows(connection, notes.rows, self.redact)
        if winner is not None:
            self.scheduler.committed(now)
        _measure(row["rule"], state, winner, attempts)
        log.info(
            "decision recorded",
            decision_id=row["id"],
            incident_id=row["incident_id"],
            state=state.value,
            tier=winner.tier.value if winner else None,
            action=winner.action if winner else None,
        )
        return state

    async def _create(
        self,
        connection: AsyncConnection,
        row: dict[str, Any],
        request: DecisionInput,
        winner: Proposal,
        notes: _Notes,
        now: datetime,
    ) -> None:
        config = request.catalogue[winner.action]
        notes.add(
            EventKind.DECISION_MADE,
            f"decision #{row['id']}: {winner.action} {_shown_params(winner.params)} "
            f"proposed by the {winner.tier.value} tier"
            + (f" ({winner.rationale})" if winner.rationale else ""),
            decision_id=row["id"],
            proposal=proposal_record(winner),
        )
        alert = request.first_alert
        created = await create_action(
            connection,
            NewAction(
                incident_id=row["incident_id"],
                incident=request.incident,
                alert_id=row["alert_id"],
                alert=alert,
                rule=row["rule"],
                action_name=winner.action,
                config=config,
                signal=Signal.FIRING,
                why=f"by decision #{row['id']} of rule {row['rule']!r} ({winner.tier.value})",
                verify=effective_verify(request.rule.verify, config.verify),
                params=winner.params,
                context={"decision": decision_context(row["id"], winner)},
                noted={"decision_id": row["id"]},
            ),
            policy=request.policy,
            scheduler=self.scheduler,
            note=notes.note,
            now=now,
        )
        action_id = created.action_id if created.action_id is not None else created.in_flight
        if created.action_id is None:
            notes.add(
                EventKind.DECISION_MADE,
                f"decision #{row['id']}: {winner.action!r} is already in flight "
                f"(#{created.in_flight})",
                action_id=created.in_flight,
                decision_id=row["id"],
            )
        values: dict[str, Any] = {"action_id": action_id}
        status = created.row.get("status")
        if status is not None and ActionStatus(status).is_terminal:
            values["state"] = DecisionState.COMPLETED.value  # blocked, silenced, not creatable
        await decisions_repo.set_values(connection, row["id"], values)


def build_input(
    decision_id: int,
    rule_name: str,
    incident: dict[str, Any],
    alerts: Sequence[dict[str, Any]],
    first_alert_id: int | None,
    policy: Policy,
) -> DecisionInput | str:
    """What the tiers look at, from the incident's and its alerts' rows (the firing ones,
    the one that opened the decision first), or why the rule cannot decide."""
    rule = next((r for r in policy.rules if r.name == rule_name), None)
    if rule is None or rule.decide is None:
        return f"rule {rule_name!r} no longer decides (the policy changed)"
    catalogue = {
        name: policy.actions[name] for name in rule.decide.catalogue if name in policy.actions
    }
    firing = [a for a in alerts if a["status"] == "firing"] or list(alerts)
    first = [a for a in firing if a["id"] == first_alert_id]
    ordered = first + [a for a in firing if a["id"] != first_alert_id]
    return DecisionInput(
        decision_id=decision_id,
        incident=incident_context(incident),
        alerts=[_alert_context(a) for a in ordered],
        rule=rule,
        catalogue=catalogue,
        policy=policy,
    )


async def try_tiers(
    tiers: Sequence[Tier], request: DecisionInput, deadline: float, *, in_time: bool = True
) -> tuple[list[TierAttempt], Proposal | None]:
    """Each tier in turn until one's proposal passes the checks, the expert rules last
    whatever the time: every attempt, and the winner. Writes nothing, so replay and
    evaluation decide exactly as the service does."""
    attempts: list[TierAttempt] = []
    for tier in [t for t in tiers if t.name is not TierName.EXPERT]:
        if not in_time or time.monotonic() >= deadline:
            attempts.append(TierAttempt(tier.name, 0.0, rejected="not tried: the budget ran out"))
            continue
        began = time.monotonic()
        answer = await _ask(tier, request, deadline)
        attempt = _judge(tier.name, answer, request, (time.monotonic() - began) * 1000)
        attempts.append(attempt)
        if attempt.proposal is not None:
            return attempts, attempt.proposal
    began = time.monotonic()
    answer = expert.propose(request)
    attempt = _judge(TierName.EXPERT, answer, request, (time.monotonic() - began) * 1000)
    attempts.append(attempt)
    return attempts, attempt.proposal


async def _ask(tier: Tier, request: DecisionInput, deadline: float) -> TierAnswer:
    """The tier's answer by the deadline; a slower, failing or broken tier is an answer
    with its reason, never an error of the decision."""
    left = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(tier.propose(request, deadline), timeout=max(0.0, left))
    except TimeoutError:
        return TierAnswer.none(f"abandoned after {max(0.0, left):.1f} s: the budget ran out")
    except Exception as exc:
        log.exception("a decision tier failed", tier=tier.name.value)
        return TierAnswer.none(f"failed: {type(exc).__name__}: {exc}")


def _judge(
    tier: TierName, answer: TierAnswer, request: DecisionInput, latency_ms: float
) -> TierAttempt:
    """The tier's answer as an attempt: its proposal only if the rule's catalogue allows
    the action and the params validate against the action's."""
    proposal = answer.proposal
    if proposal is None:
        return TierAttempt(tier, latency_ms, rejected=answer.reason or "no proposal")
    config: ActionBase | None = request.catalogue.get(proposal.action)
    if config is None:
        allowed = ", ".join(request.catalogue) or "none"
        return TierAttempt(
            tier,
            latency_ms,
            rejected=f"proposed {proposal.action!r}, which is not in the catalogue ({allowed})",
        )
    try:
        params = validate_params(config.params, proposal.params, request.policy)
    except ParamsRejected as exc:
        return TierAttempt(tier, latency_ms, rejected=f"params rejected: {exc.reason}")
    accepted = Proposal(
        tier=proposal.tier,
        action=proposal.action,
        params=params,
        confidence=proposal.confidence,
        rationale=proposal.rationale,
        evidence=proposal.evidence,
    )
    return TierAttempt(tier, latency_ms, proposal=accepted)


def _measure(
    rule: str, state: DecisionState, winner: Proposal | None, attempts: list[TierAttempt]
) -> None:
    metrics.DECISIONS.labels(state.value, winner.tier.value if winner else "none", rule).inc()
    for attempt in attempts:
        skipped = attempt.rejected is not None and attempt.rejected.startswith("not tried")
        answer = "proposed" if attempt.proposal else ("skipped" if skipped else "rejected")
        metrics.DECISION_TIER_SECONDS.labels(attempt.tier.value, answer).observe(
            attempt.latency_ms / 1000
        )


def rejections(attempts: Sequence[TierAttempt]) -> str:
    """Why each tier that had no accepted proposal had none, in order."""
    return "; ".join(f"{a.tier.value}: {a.rejected}" for a in attempts if a.rejected)


def decision_context(decision_id: int, winner: Proposal) -> dict[str, Any]:
    """What the action keeps of its decision (the gate's auto-approval reads it)."""
    context: dict[str, Any] = {
        "id": decision_id,
        "tier": winner.tier.value,
        "confidence": winner.confidence,
    }
    if "lower_bound" in winner.evidence:
        context["lower_bound"] = winner.evidence["lower_bound"]
    if "playbook_id" in winner.evidence:
        context["playbook_id"] = winner.evidence["playbook_id"]
    return context


def _alert_context(row: dict[str, Any]) -> dict[str, Any]:
    starts = row.get("starts_at")
    return {
        "id": row["id"],
        "name": row["labels"].get("alertname", ""),
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "labels": dict(row["labels"]),
        "annotations": dict(row.get("annotations") or {}),
        "starts_at": starts.isoformat() if isinstance(starts, datetime) else starts,
        "generator_url": row.get("generator_url"),
    }


def _shown_params(params: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"


class _Notes(timeline_repo.PendingRows):
    """Timeline rows of one verdict, of one incident, written together."""

    def __init__(self, incident_id: int, now: datetime) -> None:
        super().__init__(now)
        self.incident_id = incident_id

    def add(self, kind: EventKind, message: str, action_id: int | None = None, **data: Any) -> None:
        self.note(self.incident_id, kind, message, action_id, **data)

    def tier(self, decision_id: int, attempt: TierAttempt) -> None:
        said = (
            f"proposed {attempt.proposal.action} {_shown_params(attempt.proposal.params)}"
            if attempt.proposal
            else f"no proposal: {attempt.rejected}"
        )
        self.add(
            EventKind.DECISION_TIER,
            f"decision #{decision_id}: {attempt.tier.value} tier {said} "
            f"({attempt.latency_ms:.0f} ms)",
            decision_id=decision_id,
            **attempt.as_record(),
        )
