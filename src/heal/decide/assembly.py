"""The tiers a policy configures, built once per policy version: the playbooks (when
enabled) and the LLM (when ``decide.llm`` is set); the expert rules are the decision
service's own last word. One HTTP client serves every LLM call of the process, and one
playbook tier keeps its in-process index across policy versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from heal.decide.knowledge import KnowledgeBase
from heal.decide.llm import LlmTier
from heal.decide.playbooks import PlaybookTier
from heal.decide.tiers import Tier
from heal.policy.models import Policy
from heal.store.db import Database


class TierSet:
    def __init__(self, database: Database, secrets: Mapping[str, str]) -> None:
        self.database = database
        self.secrets = secrets
        self.knowledge = KnowledgeBase(database)
        # One for the process: it keeps each alert name's playbooks between decisions.
        self.playbooks = PlaybookTier(database)
        self._client: httpx.AsyncClient | None = None
        self._built: tuple[Policy, list[Tier]] | None = None

    def __call__(self, policy: Policy) -> Sequence[Tier]:
        if self._built is not None and self._built[0] is policy:
            return self._built[1]
        tiers: list[Tier] = []
        if policy.decide.playbooks.enabled:
            tiers.append(self.playbooks)
        llm = LlmTier.from_policy(
            policy, secrets=self.secrets, client=self.client, knowledge=self.knowledge
        )
        if llm is not None:
            tiers.append(llm)
        self._built = (policy, tiers)
        return tiers

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
