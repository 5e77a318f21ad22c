"""The schema. Alembic migrations in ``migrations/`` must produce exactly this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from heal.store.types import Id, Json, UTCDateTime

if TYPE_CHECKING:
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("group_key", String(512), nullable=False),
    Column("rule", String(200), nullable=True),
    Column("title", String(500), nullable=False),
    Column("severity", String(50), nullable=True),
    Column("status", String(20), nullable=False),
    Column("group_labels", Json, nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("resolution", String(50), nullable=True),
    # Set while open, NULL once resolved: the unique index allows one open incident per
    # group key, while any number of resolved ones share it.
    Column("open_key", String(512), nullable=True, unique=True),
)
Index("ix_incidents_status_opened", incidents.c.status, incidents.c.opened_at)
Index("ix_incidents_opened", incidents.c.opened_at)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fingerprint", String(128), nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=True),
    Column("status", String(20), nullable=False),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("generator_url", Text, nullable=True),
    Column("source", String(50), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=True),
)
# Deduplication: one row per occurrence.
Index("uq_alerts_fingerprint_starts_at", alerts.c.fingerprint, alerts.c.starts_at, unique=True)
Index("ix_alerts_incident_id", alerts.c.incident_id)

actions = Table(
    "actions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=True),
    Column("rule", String(200), nullable=False),
    Column("action_name", String(200), nullable=False),
    Column("plugin", String(50), nullable=False),
    Column("signal", String(20), nullable=False),
    # Snapshots taken at creation: a policy reload never changes a running action.
    Column("config", Json, nullable=False),
    Column("context", Json, nullable=False),
    Column("status", String(20), nullable=False),
    Column("failure_type", String(40), nullable=True),
    Column("message", Text, nullable=True),
    Column("version", Integer, nullable=False, server_default=text("0")),
    Column("current_node", String(200), nullable=True),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("poll", Integer, nullable=False, server_default=text("0")),
    Column("framework_errors", Integer, nullable=False, server_default=text("0")),
    Column("outputs", Json, nullable=False),
    # Outputs of the node that ran before the current one: stable across its polls.
    Column("pre_node_outputs", Json, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("timeout_at", UTCDateTime(), nullable=True),
    Column("approval_expires_at", UTCDateTime(), nullable=True),
    Column("next_poll_at", UTCDateTime(), nullable=True),
    # The one pending wake: min of the deadlines above, NULL once terminal.
    Column("next_wake_at", UTCDateTime(), nullable=True),
    Column("claimed_until", UTCDateTime(), nullable=True),
    # The run key of a step that is not idempotent, set before it runs and cleared by the
    # commit of its outcome: found set by a later wake, the run's outcome is unknown.
    Column("running_key", String(400), nullable=True),
    # "incident:rule:action" while in flight, NULL once terminal: converge is enforced by
    # the unique index, not only by the code that checks it.
    Column("inflight_key", String(600), nullable=True, unique=True),
    # What the action works on (its rendered target_key), NULL when it names none: the
    # governors count and lease per target.
    Column("target", String(500), nullable=True),
    # When the action was first delayed for its busy target (concurrency policy delay):
    # how long it has waited, from the row, for concurrency.max_wait.
    Column("delayed_at", UTCDateTime(), nullable=True),
)
Index("ix_actions_next_wake_at", actions.c.next_wake_at)
Index("ix_actions_incident_id", actions.c.incident_id)
Index("ix_actions_status", actions.c.status)
Index("ix_actions_action_name_target", actions.c.action_name, actions.c.target)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", Json, nullable=False),
)
Index("ix_timeline_incident_id", timeline.c.incident_id, timeline.c.id)
Index("ix_timeline_action_id", timeline.c.action_id)

# -- people ---------------------------------------------------------------------------------
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("groups", Json, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    # "sha256:<hex>" of the token; the token itself is shown once and never stored.
    Column("token_hash", String(100), nullable=False, unique=True),
    Column("label", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    # Scope names the token is narrowed to; NULL: all that the user's role allows.
    Column("scopes", Json, nullable=True),
    # When the token stops working; NULL: until revoked.
    Column("expires_at", UTCDateTime(), nullable=True),
)

chat_identities = Table(
    "chat_identities",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("external_id", String(200), nullable=False),
)
Index(
    "uq_chat_identities_provider_external",
    chat_identities.c.provider,
    chat_identities.c.external_id,
    unique=True,
)

# -- approvals ------------------------------------------------------------------------------
approvals = Table(
    "approvals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=False, unique=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("risk", String(20), nullable=False),
    Column("required_signatures", Integer, nullable=False),
    Column("approver_groups", Json, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    # Final approvals are archived, never deleted.
    Column("archived_at", UTCDateTime(), nullable=True),
)
Index("ix_approvals_status_expires", approvals.c.status, approvals.c.expires_at)

approval_signatures = Table(
    "approval_signatures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("approval_id", Id, ForeignKey("approvals.id"), nullable=False),
    Column("signer", String(200), nullable=False),
    Column("decision", String(20), nullable=False),
    Column("comment", Text, nullable=True),
    Column("channel", String(20), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
# One person signs once: the database says so too.
Index(
    "uq_approval_signatures_approval_signer",
    approval_signatures.c.approval_id,
    approval_signatures.c.signer,
    unique=True,
)

chat_cards = Table(
    "chat_cards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("approval_id", Id, ForeignKey("approvals.id"), nullable=True),
    Column("provider", String(20), nullable=False),
    Column("chat_id", String(200), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False),
    # The card this one was posted under (one card per incident within a window).
    Column("thread_id", String(200), nullable=True),
    # When its buttons were removed (the approval was decided or expired).
    Column("closed_at", UTCDateTime(), nullable=True),
)
Index(
    "ix_chat_cards_incident_provider",
    chat_cards.c.incident_id,
    chat_cards.c.provider,
    chat_cards.c.sent_at,
)
Index("ix_chat_cards_approval_id", chat_cards.c.approval_id)

silences = Table(
    "silences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("matchers", Json, nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
Index("ix_silences_ends_at", silences.c.ends_at)

# Chat messages to send, written in the transaction that decided them (an outbox): a
# crash between the decision and the send loses nothing.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("approval_id", Id, ForeignKey("approvals.id"), nullable=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=True),
    Column("kind", String(20), nullable=False),  # "card" | "update" | "event"
    Column("text", Text, nullable=False),
    # "pending" | "sent" | "skipped" (a card for a closed incident) | "failed"
    Column("status", String(20), nullable=False),
    # The channels it reached, comma-separated: a retry skips them.
    Column("sent_to", String(100), nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("error", Text, nullable=True),
    # A routed event (kind "event"): the one channel it goes to, by its policy name, the
    # event's name and the JSON a webhook receives. One row per event and channel: the
    # row is that channel's delivery record.
    Column("channel", String(100), nullable=True),
    Column("event", String(40), nullable=True),
    Column("payload", Json, nullable=True),
    # When a dispatcher took the channel's slot to send it: the rate limit, across workers.
    Column("sending_at", UTCDateTime(), nullable=True),
    # A message queued at most once (a notify step's idempotency key, an incident's rating
    # prompt): the unique index holds on every worker.
    Column("dedupe_key", String(200), nullable=True),
)
Index("ix_notifications_status_next", notifications.c.status, notifications.c.next_attempt_at)
Index("ix_notifications_channel_sending_at", notifications.c.channel, notifications.c.sending_at)
Index("ix_notifications_incident_id", notifications.c.incident_id)
Index("uq_notifications_dedupe_key", notifications.c.dedupe_key, unique=True)

# -- verification of fixes ------------------------------------------------------------------
# One row per action that ended success under a ``verify:``: the watch of its incident, its
# deadlines and its verdict. Rows, never memory: a restart mid-window still reaches one.
verifications = Table(
    "verifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=False, unique=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("action_name", String(200), nullable=False),
    # "pending" | "verified" | "ineffective" | "relapsed"
    Column("outcome", String(20), nullable=False),
    Column("on_ineffective", String(20), nullable=False),
    Column("quiet_for", Integer, nullable=False),
    # When the action succeeded, and by when the incident must have resolved.
    Column("started_at", UTCDateTime(), nullable=False),
    Column("within_at", UTCDateTime(), nullable=False),
    # When the incident resolved in time, and until when it must stay quiet.
    Column("resolved_at", UTCDateTime(), nullable=True),
    Column("quiet_until", UTCDateTime(), nullable=True),
    Column("outcome_at", UTCDateTime(), nullable=True),
    # What the verdict rests on: alerts still firing, or firing again.
    Column("evidence", Json, nullable=False),
)
Index("ix_verifications_outcome", verifications.c.outcome)
Index("ix_verifications_incident_id", verifications.c.incident_id)

# People's ratings (1-5) of an incident's remediation: one per person, the last one wins.
ratings = Table(
    "ratings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("rated_by", String(200), nullable=False),
    Column("score", Integer, nullable=False),
    Column("comment", Text, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
)
Index("uq_ratings_incident_rated_by", ratings.c.incident_id, ratings.c.rated_by, unique=True)

# One decision per incident and deciding rule: which action of the rule's catalogue to run.
decisions = Table(
    "decisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", Id, ForeignKey("incidents.id"), nullable=False),
    Column("rule", String(200), nullable=False),
    # The alert that started it: the one the tiers look at first.
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=True),
    # init | analyzing | ready | executing | completed | error
    Column("state", String(20), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The budget's end: past it, the decision goes to the expert rules.
    Column("deadline_at", UTCDateTime(), nullable=False),
    # A process running the tiers holds the row until then (its lease).
    Column("claimed_until", UTCDateTime(), nullable=True),
    Column("runs", Integer, nullable=False),
    # The tiers tried, in order: tier, latency, proposal or why it was rejected.
    Column("attempts", Json, nullable=False),
    Column("tier", String(20), nullable=True),
    Column("proposal", Json, nullable=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=True),
    Column("error", Text, nullable=True),
)
Index("uq_decisions_incident_id_rule", decisions.c.incident_id, decisions.c.rule, unique=True)
Index("ix_decisions_state", decisions.c.state)
Index("ix_decisions_action_id", decisions.c.action_id)

# -- safety governors -----------------------------------------------------------------------
# One row per slot of a target held by a started action: the primary key makes "never two
# at once" the database's rule, on every worker. Deleted in the commit that ends the action;
# a lease whose action ended anyway (a crash) is taken over by the next action that wants it.
target_leases = Table(
    "target_leases",
    metadata,
    Column("target", String(600), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("action_id", Id, ForeignKey("actions.id"), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
)
Index("ix_target_leases_action_id", target_leases.c.action_id)

# One row per (action, target) whose breaker opened once: open while closes_at is ahead.
# A reset moves closes_at to the moment of the reset; failures before it no longer count.
breakers = Table(
    "breakers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("action_name", String(200), nullable=False),
    # The rendered target_key, or "" for an action without one.
    Column("target", String(500), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("closes_at", UTCDateTime(), nullable=False),
    Column("reset_by", String(200), nullable=True),
    Column("reset_at", UTCDateTime(), nullable=True),
    # The failed (or ineffective) actions that opened it, [{action_id, incident_id}]: the
    # incidents whose timelines hear of its opening and of its reset.
    Column("tripped_by", Json, nullable=True),
)
Index("uq_breakers_action_name_target", breakers.c.action_name, breakers.c.target, unique=True)

# -- knowledge base -------------------------------------------------------------------------
# What the LLM is told and `heal kb search` finds: one row per incident's remediation
# ("incident:<id>") and per section of an operator's runbook ("<path>#<anchor>"). The
# full-text index is each database's own and undeclared here (see SEARCH_OBJECTS and
# heal.store.knowledge_repo): on SQLite the FTS5 table knowledge_fts, kept by triggers; on
# PostgreSQL the generated tsvector column "search" and its GIN index.
knowledge_entries = Table(
    "knowledge_entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # "remediation" | "runbook"
    Column("ref", String(1000), nullable=False),
    # What the entry was made from: the runbook file's path, or "incident:<id>".
    Column("source", String(1000), nullable=False),
    Column("title", String(500), nullable=False),
    Column("body", Text, nullable=False),
    # A remediation's alertname, labels and annotations.
    Column("symptoms", Json, nullable=False),
    Column("action", String(200), nullable=True),
    Column("params", Json, nullable=False),
    Column("outcome", String(20), nullable=True),
    Column("effectiveness", Integer, nullable=True),
    Column("seconds_to_resolve", Integer, nullable=True),
    # "sha256:<hex>" of what the entry was made from: an unchanged source is not rewritten.
    Column("content_hash", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index("uq_knowledge_entries_ref", knowledge_entries.c.ref, unique=True)
Index("ix_knowledge_entries_kind_source", knowledge_entries.c.kind, knowledge_entries.c.source)

# The search objects migrations create per database, outside ``metadata``: the tables of
# SQLite's FTS5 index (its shadow tables share the prefix), PostgreSQL's column and index.
SEARCH_TABLE = "knowledge_fts"
SEARCH_COLUMN = "search"
SEARCH_INDEX = "ix_knowledge_entries_search"


def declared(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Alembic's ``include_name``: whether a database object is one ``metadata`` declares
    (False for the full-text search objects above, which autogenerate must leave alone)."""
    if type_ == "table" and name is not None:
        return name != SEARCH_TABLE and not name.startswith(SEARCH_TABLE + "_")
    if parent_names.get("table_name") == knowledge_entries.name:
        return name not in (SEARCH_COLUMN, SEARCH_INDEX)
    return True


# -- playbooks ------------------------------------------------------------------------------
# What verifiably fixed a symptom signature before: learned from incidents whose
# remediation proved effective, proposed (once approved) by the playbook tier. One row per
# (signature, action, params): a second effective fix of the same kind adds to its stats.
playbooks = Table(
    "playbooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("signature_key", String(64), nullable=False),
    Column("signature", Json, nullable=False),
    # The signature's alertname again, for the tier's candidates by name.
    Column("alertname", String(200), nullable=False),
    Column("annotation_text", Text, nullable=False),
    Column("action_name", String(200), nullable=False),
    Column("params", Json, nullable=False),
    # A hash of the params: the merge key is unique on it, a JSON column cannot be.
    Column("params_key", String(64), nullable=False),
    # "draft" | "approved" | "deprecated"
    Column("status", String(20), nullable=False),
    Column("runs", Integer, nullable=False),
    Column("verified_successes", Integer, nullable=False),
    Column("rejections", Integer, nullable=False),
    # Wilson lower bound of verified_successes over runs + rejections, kept with them.
    Column("lower_bound", Float, nullable=False),
    Column("mttr_seconds", Float, nullable=True),
    Column("mttr_samples", Integer, nullable=False),
    Column("learned_from", Id, nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("version", Integer, nullable=False),
)
Index(
    "uq_playbooks_signature_key_action_name_params_key",
    playbooks.c.signature_key,
    playbooks.c.action_name,
    playbooks.c.params_key,
    unique=True,
)
# The tier reads (and stamps) the playbooks of an alert name, best lower bound first.
Index(
    "ix_playbooks_status_alertname_lower_bound",
    playbooks.c.status,
    playbooks.c.alertname,
    playbooks.c.lower_bound,
)

# What the learning sweep took from each incident, so a later rating adjusts the stats
# instead of counting the incident twice. ``seen_at``: the newest rating, verdict or
# resolution it had then; a newer one makes the incident due again.
learned = Table(
    "learned",
    metadata,
    Column("incident_id", Id, ForeignKey("incidents.id"), primary_key=True, autoincrement=False),
    Column("effectiveness", Integer, nullable=True),
    Column("seen_at", UTCDateTime(), nullable=False),
    Column("learned_at", UTCDateTime(), nullable=False),
    # The playbook learner's share: which playbook the incident counted for, and whether
    # as a success.
    Column("playbook_id", Id, ForeignKey("playbooks.id"), nullable=True),
    Column("playbook_success", Boolean, nullable=False),
)
Index("ix_learned_playbook_id", learned.c.playbook_id)
