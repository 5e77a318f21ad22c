"""Wiring: one ``Heal`` holds the database, policy, engine, runtime and ingest."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from heal.approvals.dispatcher import ChatDispatcher
from heal.approvals.notices import NotificationHook, StepOutbox
from heal.approvals.service import ApprovalService
from heal.decide.assembly import TierSet
from heal.decide.hook import DecisionHook
from heal.decide.knowledge import remediation_learner
from heal.decide.learning import LearningSweep, learn_playbook
from heal.decide.service import DecisionService
from heal.domain.access import Scope
from heal.domain.redaction import Redactor
from heal.engine.engine import Engine
from heal.engine.hooks import Hooks
from heal.engine.interfaces import PluginContext
from heal.governors import leases
from heal.governors.hook import GovernorHook, TargetGuard
from heal.ingest.fallback import FallbackHook
from heal.ingest.service import IngestService
from heal.notify.channels import ChatChannel
from heal.notify.slack import SlackChannel
from heal.notify.telegram import TelegramChannel
from heal.observability import logging as heal_logging
from heal.observability.logging import get_logger
from heal.plugins.registry import PluginSet
from heal.policy.loader import basic_credentials, load_policy, resolve_secrets
from heal.policy.models import Policy
from heal.policy.ruleset import RuleSet
from heal.runtime.distributed import ProcrastinateRuntime
from heal.runtime.embedded import EmbeddedRuntime
from heal.settings import Settings
from heal.store import actions_repo, migrate
from heal.store.db import Database
from heal.verify.service import VerificationService

Runtime = EmbeddedRuntime | ProcrastinateRuntime
log = get_logger("heal.app")


def chat_channels(settings: Settings) -> list[ChatChannel]:
    """The chats approval cards go to, as configured."""
    channels: list[ChatChannel] = []
    if settings.telegram_bot_token and settings.telegram_chat_id:
        channels.append(
            TelegramChannel(
                settings.telegram_bot_token.get_secret_value(),
                settings.telegram_chat_id,
                api_url=settings.telegram_api_url,
            )
        )
    if settings.slack_bot_token and settings.slack_channel:
        channels.append(
            SlackChannel(
                settings.slack_bot_token.get_secret_value(),
                settings.slack_channel,
                api_url=settings.slack_api_url,
            )
        )
    return channels


@dataclass
class Heal:
    settings: Settings
    db: Database
    ruleset: RuleSet
    engine: Engine
    runtime: Runtime
    ingest: IngestService
    approvals: ApprovalService
    plugins: PluginSet
    chat: ChatDispatcher
    verification: VerificationService
    decisions: DecisionService
    tiers: TierSet
    # Learns playbooks (and, later, knowledge) from remediations whose effectiveness is known.
    learning: LearningSweep
    # service tokens: hash -> scopes
    token_hashes: dict[str, frozenset[Scope]] = field(default_factory=dict)
    running: bool = False
    # The start's indexing of the policy's runbooks, while it runs.
    indexing: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings, policy: Policy | None = None) -> Heal:
        if policy is None:
            policy = load_policy(settings.config) if settings.config else Policy()
        secrets = resolve_secrets(policy)
        masked = [*secrets.values(), *settings.chat_secrets()]
        credentials = basic_credentials(policy, secrets)
        db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_pending_writes=settings.max_pending_writes,
        )
        redact = Redactor(masked, credentials)
        heal_logging.set_redactor(redact)
        runtime: Runtime
        if settings.runtime == "procrastinate":
            runtime = ProcrastinateRuntime(
                db,
                concurrency=settings.workers,
                stalled_after=settings.stalled_after,
                sweep_interval=settings.sweep_interval,
                shutdown_grace=settings.shutdown_grace,
                redact=redact,
            )
        else:
            runtime = EmbeddedRuntime(db, concurrency=settings.workers)
        ruleset = RuleSet(policy)
        channels = chat_channels(settings)
        # A notify step's message goes into the outbox the dispatcher sends (the engine's
        # clock, so it is due when the step ran).
        outbox = StepOutbox(
            db,
            lambda: holder.ruleset.policy,
            {c.provider for c in channels},
            redact,
            lambda: holder.engine.clock(),
        )
        plugins = PluginSet(
            PluginContext(lambda: holder.ruleset.policy, secrets, redact, outbox=outbox)
        )
        decision_hook = DecisionHook()
        approvals = ApprovalService(
            db,
            runtime,
            redact,
            announce_outcomes=bool(channels),
            policy=lambda: holder.ruleset.policy,
            on_rejected=decision_hook.on_rejected,
        )
        fallbacks = FallbackHook(runtime, lambda: holder.ruleset, redact)
        verification = VerificationService(db, runtime, lambda: holder.ruleset, redact)
        notices = NotificationHook(lambda: holder.ruleset.policy, redact)
        tier_set = TierSet(db, secrets)
        decisions = DecisionService(db, runtime, lambda: holder.ruleset, tier_set, redact=redact)
        # The governors' hook first: a lease is given back before a fallback or a follow-up
        # of the same commit asks for the target.
        hooks = Hooks(
            GovernorHook(runtime, redact),
            approvals,
            fallbacks,
            verification,
            notices,
            decision_hook,
        )
        engine = Engine(
            db, runtime, plugins, secrets, hook=hooks, redact=redact, guard=TargetGuard()
        )
        holder = cls(
            settings=settings,
            db=db,
            ruleset=ruleset,
            engine=engine,
            runtime=runtime,
            ingest=IngestService(
                db,
                runtime,
                lambda: holder.ruleset,
                redact,
                on_firing=verification.on_firing,
                on_decisions=decisions.started,
            ),
            approvals=approvals,
            plugins=plugins,
            chat=ChatDispatcher(
                db,
                channels,
                redact,
                card_window=timedelta(seconds=settings.chat_card_window),
                policy=lambda: holder.ruleset.policy,
                secrets=secrets,
            ),
            verification=verification,
            decisions=decisions,
            tiers=tier_set,
            learning=LearningSweep(db, [learn_playbook, remediation_learner(redact)]),
            token_hashes=settings.token_hashes(),
        )
        return holder

    async def start(self, *, worker: bool = True) -> None:
        """Migrate the database, then start claiming wakes (unless API-only)."""
        if self.db.is_sqlite:
            Path(self.db.url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        await migrate.upgrade(self.db)
        if worker:
            self.runtime.add_sweep(self.sweep_expired_approvals)
            self.runtime.add_sweep(self.verification.sweep)
            self.runtime.add_sweep(self.sweep_leases)
            self.runtime.add_sweep(self.decisions.sweep)
            self.runtime.add_sweep(self.learning.sweep)
            await self.runtime.start(self.engine)
            self.chat.start()
            self.indexing = asyncio.create_task(self.index_runbooks(), name="heal-runbooks")
        elif isinstance(self.runtime, ProcrastinateRuntime):
            await self.runtime.open()
        self.running = True

    async def index_runbooks(self) -> None:
        """The policy's runbooks (``decide.knowledge.dirs``) into the knowledge base, at
        start: a deploy that ships new runbooks needs no command (unchanged files are
        skipped; ``heal kb index`` does the same at any time)."""
        dirs = self.ruleset.policy.decide.knowledge.dirs
        if not dirs:
            return
        try:
            report = await self.tiers.knowledge.index_runbooks(dirs)
        except Exception:
            log.exception("indexing the runbooks failed")
            return
        for warning in report.warnings:
            log.warning("runbook not indexed", reason=warning)
        counts = {k: v for k, v in report.as_dict().items() if k != "warnings"}
        log.info("runbooks indexed", **counts)

    async def sweep_expired_approvals(self) -> int:
        """Expire unanswered approvals past their deadline, in batches (the sweeper).

        The action's own deadline normally does this; the sweep is the safety net, and
        both go through the same wake, so whichever comes second finds nothing to do.
        """
        batch = self.ruleset.policy.approval.sweep_batch
        expired = 0
        while True:
            due = await self.approvals.expired_batch(batch)
            for action_id, version in due:
                await self.engine.wake(action_id, version)
            expired += len(due)
            if len(due) < batch:
                return expired

    async def sweep_leases(self) -> int:
        """Give back target leases whose action ended without doing so (the sweeper)."""
        async with self.db.write() as connection:
            return await leases.sweep_ended(connection)

    async def schedule_all_wakes(self) -> int:
        """Give every in-flight action a wake on this runtime (after moving databases)."""
        async with self.db.write() as connection:
            due = await actions_repo.wakes_due(connection)
            for action_id, version, at in due:
                await self.runtime.schedule(connection, action_id, version, at)
        return len(due)

    async def stop(self) -> None:
        self.running = False
        if self.indexing is not None:
            self.indexing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.indexing
        await self.decisions.drain(grace=5.0)
        await self.tiers.aclose()
        await self.chat.stop()
        await self.runtime.stop()
        await self.plugins.aclose()
        await self.db.dispose()
