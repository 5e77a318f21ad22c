"""Tier 2: ask an OpenAI-compatible LLM which catalogue action to run, in one structured call.

The prompt (``llm_prompt``) carries the incident, its alerts with the configured labels
replaced by placeholders, the catalogue with each action's params schema, and what the
knowledge base found within ``decide.knowledge.context_timeout``. The answer is asked for
as strict structured output (``response_format: json_schema``); a server that refuses it
(HTTP 400 naming ``response_format``) is asked again without, and is not offered it again
by this tier. Every answer is checked (``llm_answers``) before it may win; for the
severities under ``consensus`` several answers are asked for at once and enough of them
must agree. The API key goes in the ``Authorization`` header only: never in a log line,
a reason or a note.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from statistics import fmean
from typing import Any

import httpx

from heal.decide.llm_answers import AnswerRejected, Checked, check, parse
from heal.decide.llm_prompt import (
    Anonymizer,
    anonymizer_for,
    knowledge_query,
    messages,
    response_format,
)
from heal.decide.tiers import DecisionInput, KnowledgeHit, KnowledgeSearch, TierAnswer
from heal.domain.decisions import Proposal, TierName
from heal.domain.redaction import Redactor
from heal.observability.logging import get_logger
from heal.policy.decide import LlmTier as LlmSettings
from heal.policy.models import Policy

log = get_logger("heal.decide.llm")

MAX_ATTEMPTS = 3
MAX_ERROR_TEXT = 200


@dataclass
class _Usage:
    """What the calls of one decision cost, for the timeline."""

    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            self.prompt_tokens += _count(usage.get("prompt_tokens"))
            self.completion_tokens += _count(usage.get("completion_tokens"))

    def record(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass
class _Call:
    """One decision's question, shared by its samples."""

    request: DecisionInput
    anonymizer: Anonymizer
    messages: list[dict[str, str]]
    started: float
    end: float
    usage: _Usage = field(default_factory=_Usage)

    @property
    def allowed(self) -> float:
        return self.end - self.started


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


class LlmTier:
    """The LLM tier, one per policy's ``decide.llm`` settings and HTTP client."""

    name = TierName.LLM

    def __init__(
        self,
        settings: LlmSettings,
        *,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
        knowledge: KnowledgeSearch | None = None,
        context_timeout: float = 5.0,
        retry_base: float = 0.5,
    ) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self.client = client
        self.knowledge = knowledge
        self.context_timeout = context_timeout
        self.retry_base = retry_base
        self.schema_refused = False
        key = _api_key(settings, secrets)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._redact = Redactor([key] if key else [])

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        secrets: Mapping[str, str],
        client: httpx.AsyncClient,
        knowledge: KnowledgeSearch | None = None,
    ) -> LlmTier | None:
        """The tier ``policy.decide.llm`` configures, or None when it configures none."""
        settings = policy.decide.llm
        if settings is None:
            return None
        timeout = policy.decide.knowledge.context_timeout
        return cls(
            settings, secrets=secrets, client=client, knowledge=knowledge, context_timeout=timeout
        )

    async def propose(self, request: DecisionInput, deadline: float) -> TierAnswer:
        started = time.monotonic()
        end = min(deadline, started + self.settings.timeout)
        anonymizer = anonymizer_for(request, self.settings.anonymize_labels)
        hits, knowledge_note = await self._knowledge(request, end)
        call = _Call(request, anonymizer, messages(request, anonymizer, hits), started, end)
        samples = self._samples(request)
        outcomes = await asyncio.gather(*(self._sample(call) for _ in range(samples)))
        notes: dict[str, Any] = {
            "model": self.settings.model,
            "knowledge": knowledge_note,
            "anonymized": len(anonymizer.hidden),
        }
        if samples == 1:
            proposal, reason = self._single(outcomes[0])
        else:
            proposal, reason = self._consensus(outcomes, notes)
        notes.update(
            latency_ms=round((time.monotonic() - started) * 1000, 1),
            attempts=call.usage.attempts,
            usage=call.usage.record(),
            response_format="plain JSON (the server refused json_schema)"
            if self.schema_refused
            else "json_schema",
        )
        answer = TierAnswer(proposal, reason, notes)
        self._log(request, answer, notes)
        return answer

    def _samples(self, request: DecisionInput) -> int:
        consensus = self.settings.consensus
        if consensus is not None and request.severity in consensus.severities:
            return consensus.samples
        return 1

    async def _knowledge(
        self, request: DecisionInput, end: float
    ) -> tuple[Sequence[KnowledgeHit], str]:
        if self.knowledge is None or self.settings.knowledge_hits == 0:
            return [], "no knowledge base"
        timeout = max(0.0, min(self.context_timeout, end - time.monotonic()))
        limit = self.settings.knowledge_hits
        try:
            async with asyncio.timeout(timeout):
                hits = await self.knowledge.search(knowledge_query(request), limit)
        except TimeoutError:
            return [], f"the knowledge search took over {timeout:g} s; the prompt went without"
        except Exception as exc:  # a broken knowledge base must not cost the LLM's answer
            log.warning("knowledge search failed", error=type(exc).__name__, detail=str(exc))
            return (
                [],
                f"the knowledge search failed ({type(exc).__name__}); the prompt went without",
            )
        hits = list(hits)[:limit]
        return hits, f"{len(hits)} knowledge hits"

    async def _sample(self, call: _Call) -> Checked | _Failed:
        try:
            content = await self._complete(call)
            return check(parse(content), call.request, call.anonymizer)
        except AnswerRejected as exc:
            return _Failed(exc.reason)

    async def _complete(self, call: _Call) -> str | None:
        """The assistant's text: retried on 429 and 5xx while the deadline allows."""
        failures = 0
        while True:
            with_schema = not self.schema_refused
            remaining = call.end - time.monotonic()
            if remaining <= 0:
                raise AnswerRejected(self._late(call))
            call.usage.attempts += 1
            try:
                response = await self._post(self._body(call, with_schema), remaining)
            except (TimeoutError, httpx.TimeoutException):
                raise AnswerRejected(self._late(call)) from None
            except httpx.HTTPError as exc:
                problem = f"cannot reach the LLM at {self.url} ({type(exc).__name__})"
                failures += 1
                await self._wait_to_retry(call, problem, failures, None)
                continue
            if response.status_code == 200:
                return self._content(response, call)
            message, param = self._error(response)
            if response.status_code == 400 and with_schema and _refuses_format(message, param):
                self.schema_refused = True
                log.info("llm refuses json_schema", url=self.url, detail=message)
                continue
            if response.status_code in (401, 403):
                raise AnswerRejected(
                    f"the LLM endpoint refused the API key (HTTP {response.status_code})"
                )
            if response.status_code == 429 or response.status_code >= 500:
                failures += 1
                problem = f"HTTP {response.status_code} from the LLM: {message}"
                await self._wait_to_retry(call, problem, failures, _retry_after(response))
                continue
            raise AnswerRejected(
                f"the LLM endpoint refused the request (HTTP {response.status_code}): {message}"
            )

    async def _post(self, body: dict[str, Any], remaining: float) -> httpx.Response:
        # httpx's timeout is per read; the deadline is for the whole answer.
        async with asyncio.timeout(remaining):
            return await self.client.post(
                self.url, json=body, headers=self._headers, timeout=remaining
            )

    def _body(self, call: _Call, with_schema: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": call.messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        if with_schema:
            body["response_format"] = response_format(
                call.request, placeholders=bool(call.anonymizer.hidden)
            )
        return body

    async def _wait_to_retry(
        self, call: _Call, problem: str, failures: int, retry_after: float | None
    ) -> None:
        if failures >= MAX_ATTEMPTS:
            raise AnswerRejected(f"{problem} ({failures} attempts)")
        wait = retry_after if retry_after is not None else self.retry_base * 2 ** (failures - 1)
        if time.monotonic() + wait >= call.end:
            raise AnswerRejected(
                f"{problem}; retrying in {wait:g} s would pass the deadline "
                f"({call.allowed:.1f} s for the LLM)"
            )
        await asyncio.sleep(wait)

    def _content(self, response: httpx.Response, call: _Call) -> str | None:
        try:
            data = response.json()
            call.usage.add(data.get("usage"))
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise AnswerRejected(
                "the LLM endpoint's answer is not a chat completion (no choices[0].message)"
            ) from None
        if message.get("refusal"):
            refusal = self._redact.text(str(message["refusal"]))[:MAX_ERROR_TEXT]
            raise AnswerRejected(f"the LLM refused to answer: {refusal}")
        if choice.get("finish_reason") == "length":
            raise AnswerRejected(
                f"the LLM's answer was cut off at max_tokens ({self.settings.max_tokens})"
            )
        content = message.get("content")
        return content if isinstance(content, str) else None

    def _error(self, response: httpx.Response) -> tuple[str, str | None]:
        """The error's message (the key masked, shortened) and the parameter it names."""
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("error") if isinstance(body, dict) else None
        param = None
        if isinstance(detail, dict):
            param = detail.get("param") if isinstance(detail.get("param"), str) else None
            text = str(detail.get("message") or detail.get("code") or "")
        elif isinstance(detail, str):
            text = detail
        else:
            text = response.text
        text = " ".join(self._redact.text(text).split())
        if len(text) > MAX_ERROR_TEXT:
            text = text[: MAX_ERROR_TEXT - 3] + "..."
        return text or response.reason_phrase, param

    def _late(self, call: _Call) -> str:
        if call.allowed <= 0:
            return "no time was left for the LLM (the decision's deadline had passed)"
        return f"the LLM did not answer within {call.allowed:.1f} s"

    def _single(self, outcome: Checked | _Failed) -> tuple[Proposal | None, str | None]:
        if isinstance(outcome, _Failed):
            return None, outcome.reason
        return self._proposal(outcome, [outcome], 1), None

    def _consensus(
        self, outcomes: Sequence[Checked | _Failed], notes: dict[str, Any]
    ) -> tuple[Proposal | None, str | None]:
        valid = [o for o in outcomes if isinstance(o, Checked)]
        rejected = [o.reason for o in outcomes if isinstance(o, _Failed)]
        groups: dict[str, list[Checked]] = {}
        for answer in valid:
            groups.setdefault(answer.vote, []).append(answer)
        votes = sorted(groups.values(), key=len, reverse=True)
        notes["votes"] = [
            {"action": g[0].action, "params": g[0].params, "count": len(g)} for g in votes
        ]
        if rejected:
            notes["rejected"] = rejected
        needed = self.settings.consensus.agree if self.settings.consensus else 2
        best = votes[0] if votes else []
        if len(best) >= needed:
            return self._proposal(best[0], best, len(outcomes)), None
        return None, _no_consensus(votes, rejected, len(outcomes), needed)

    def _proposal(self, first: Checked, agreeing: Sequence[Checked], samples: int) -> Proposal:
        evidence: dict[str, Any] = {
            "model": self.settings.model,
            "samples": samples,
            "agreeing": len(agreeing),
        }
        if first.kubectl is not None:
            evidence["kubectl"] = first.kubectl
        surest = max(agreeing, key=lambda a: a.confidence)
        return Proposal(
            tier=TierName.LLM,
            action=first.action,
            params=first.params,
            confidence=round(fmean(a.confidence for a in agreeing), 4),
            rationale=surest.rationale,
            evidence=evidence,
        )

    def _log(self, request: DecisionInput, answer: TierAnswer, notes: Mapping[str, Any]) -> None:
        outcome = answer.proposal.action if answer.proposal else None
        log.info(
            "llm tier answered",
            decision_id=request.decision_id,
            model=self.settings.model,
            proposal=outcome,
            rejected=answer.reason,
            latency_ms=notes.get("latency_ms"),
            tokens=notes.get("usage", {}).get("total_tokens"),
        )


def _api_key(settings: LlmSettings, secrets: Mapping[str, str]) -> str | None:
    if settings.api_key is None:
        return None
    if settings.api_key not in secrets:
        raise ValueError(
            f"decide.llm.api_key names the secret {settings.api_key!r}, which has no value"
        )
    return secrets[settings.api_key]


def _refuses_format(message: str, param: str | None) -> bool:
    """A 400 that says the server will not take ``response_format``: OpenAI names the
    param; other servers only say it in words."""
    if param is not None and param.startswith("response_format"):
        return True
    text = message.lower()
    return "response_format" in text or "json_schema" in text


def _retry_after(response: httpx.Response) -> float | None:
    """The wait the server asks for: ``retry-after-ms`` (OpenAI), else ``Retry-After`` in
    seconds or as an HTTP date."""
    millis = response.headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _no_consensus(
    votes: Sequence[Sequence[Checked]], rejected: Sequence[str], samples: int, needed: int
) -> str:
    if not votes:
        reasons = "; ".join(dict.fromkeys(rejected))
        return f"no consensus: none of the {samples} answers is valid ({reasons})"
    tally = ", ".join(f"{g[0].action} ({_params(g[0])}) x{len(g)}" for g in votes)
    text = (
        f"no consensus: at most {len(votes[0])} of {samples} answers name the same action "
        f"and params, {needed} needed ({tally}"
    )
    if rejected:
        text += f"; {len(rejected)} rejected: " + "; ".join(dict.fromkeys(rejected))
    return text + ")"


def _params(answer: Checked) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(answer.params.items())) or "no params"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
