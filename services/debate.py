"""The LLM panel: Bull and Bear debate through one chat model, audited call by call, on a hard
budget that fails closed.

For each symbol-decision the two agents answer the brief in parallel (round 0); then, for each
debate round, each sees the other's latest answer and may revise: at most 2 + 2 x rounds calls,
every symbol of a candle time in the same rounds, at most `parallel` calls at once. Before each
round the worst case of its calls is reserved against the decision's and the day's budgets: a
round that does not fit is not started, and the decision is NO_TRADE (BUDGET_EXCEEDED). Every
call, answered or not, becomes an AgentCall for the ledger; an answer that does not validate is
an abstention with its cause. A replay cache keyed by (model, prompt hash) answers a prompt seen
before without calling the provider. A strict replay (tradeflow replay-decision) answers each call
from the decision's own recorded call, failures and budget stops included, after checking that
the prompt renders to the same hash; it never calls out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from core.agents.answer import InvalidAnswer, read_answer, vote_json
from core.agents.base import Agent, AgentContext, Vote
from core.agents.budget import Budget, BudgetLimits, Prices, Spend
from core.agents.calls import AgentCall, CallOutcome, ChatReply
from core.agents.panel import Deliberation, PanelRequest, collect_votes
from core.agents.prompt import PromptTemplate, RenderedPrompt
from core.clock import Clock
from core.errors import FatalError
from core.ports import AgentCallLog, ChatModel, Notifier
from core.types import DecisionId

AGENTS = ("bull", "bear")
_OTHER = {"bull": "bear", "bear": "bull"}
CacheMode = Literal["off", "read", "strict"]


class ReplayCacheMiss(FatalError, LookupError):
    """A strict replay met a prompt the cache never answered: replaying must not call out."""


@dataclass(frozen=True, slots=True)
class DebateConfig:
    rounds: int = 1  # rebuttal rounds after the opening answers (0-2)
    decision_timeout_s: float = 30.0  # the time budget of one candle time's whole debate
    parallel: int = 8  # calls in flight at once, all symbols together
    on_failure: Literal["no_trade", "offline_agents"] = "no_trade"
    cache: CacheMode = "read"
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    prices: Prices = field(default_factory=Prices)
    max_output_tokens: int = 300


@dataclass
class _Thread:
    """One symbol-decision's debate so far."""

    request: PanelRequest
    votes: dict[str, Vote] = field(default_factory=dict)  # each agent's latest answered vote
    last: dict[str, AgentCall] = field(default_factory=dict)  # each agent's latest call
    calls: list[AgentCall] = field(default_factory=list)
    stopped: str = ""  # the budget that stopped it
    recorded: dict[tuple[str, int], AgentCall] = field(default_factory=dict)  # strict replay


@dataclass(frozen=True, slots=True)
class _Job:
    thread: _Thread
    prompt: RenderedPrompt
    reserved: tuple[int, Decimal]
    cached: AgentCall | None


class LlmPanel:
    """A core.agents.panel.Panel over a chat model."""

    def __init__(
        self,
        chat: ChatModel,
        templates: Mapping[str, PromptTemplate],
        log: AgentCallLog,
        cfg: DebateConfig,
        clock: Clock,
        alerts: Notifier,
        fallback: Sequence[Agent] = (),
    ) -> None:
        self.chat, self.templates, self.log, self.cfg = chat, templates, log, cfg
        self.clock, self.alerts = clock, alerts
        self.fallback = {a.name: a for a in fallback}
        self.name = panel_name(chat)
        self._pool = ThreadPoolExecutor(max(1, cfg.parallel), thread_name_prefix="llm-agent")
        # What this panel spent today: the ledger learns of calls only when their decision is
        # recorded (a backtest's, in chunks), so the day's budget takes the larger of the two.
        self._day: tuple[date, Spend] = (date.min, Spend())

    @property
    def settings(self) -> dict[str, object]:
        """What a replay must rebuild this panel with (kept in each decision's provenance)."""
        return {
            "model": self.chat.model,
            "endpoint": self.chat.endpoint,
            "rounds": self.cfg.rounds,
            "on_failure": self.cfg.on_failure,
            "templates": {name: t.version for name, t in sorted(self.templates.items())},
        }

    def deliberate(
        self, requests: Sequence[PanelRequest], now: datetime
    ) -> dict[DecisionId, Deliberation]:
        budget = self._budget()
        deadline = time.monotonic() + self.cfg.decision_timeout_s
        threads = [_Thread(r) for r in requests]
        if self.cfg.cache == "strict":
            for t in threads:
                calls = self.log.for_decision(t.request.decision_id)
                t.recorded = {(c.agent, c.round): c for c in calls}
        for round_ in range(self.cfg.rounds + 1):
            jobs = [j for t in threads if not t.stopped for j in self._plan(t, round_, budget)]
            self._run(jobs, budget, deadline, round_)
        self._day = (self._day[0], budget.day)  # what the day came to, this panel counting
        stopped = [t for t in threads if t.stopped and self.cfg.cache != "strict"]
        if stopped:
            self.alerts.send(
                "tradeflow LLM budget exceeded: NO_TRADE",
                f"{len(stopped)} decision(s) at {now:%F %H:%M} UTC stopped: {stopped[0].stopped}",
            )
        return {t.request.decision_id: self._conclude(t) for t in threads}

    # -- one round ---------------------------------------------------------------------------

    def _budget(self) -> Budget:
        now = self.clock.now()
        if self._day[0] != now.date():
            self._day = (now.date(), Spend())
        tokens, cost = self.log.spent_since(now.replace(hour=0, minute=0, second=0, microsecond=0))
        own = self._day[1]
        day = Spend(max(tokens, own.tokens), max(cost, own.cost))
        cfg = self.cfg
        return Budget(cfg.limits, cfg.prices, cfg.max_output_tokens, day=day)

    def _plan(self, thread: _Thread, round_: int, budget: Budget) -> list[_Job]:
        """Both agents' calls of this round, reserved together: a round that does not fit the
        budget is not started at all (no half debate)."""
        key = thread.request.decision_id
        prompts = [self._render(thread, agent, round_) for agent in AGENTS]
        if self.cfg.cache == "strict":
            return self._replayed(thread, prompts)
        jobs = []
        for prompt in prompts:
            cached = self._cached(prompt)
            if cached is not None:
                jobs.append(_Job(thread, prompt, (0, Decimal(0)), cached))
                continue
            reserved = budget.reserve(key, prompt.text)
            if isinstance(reserved, str):
                for job in jobs:
                    budget.settle(key, job.reserved, 0, 0)  # release: nothing is sent
                self._stop(thread, prompts, f"round {round_}, {prompt.agent}: {reserved}")
                return []
            jobs.append(_Job(thread, prompt, reserved, None))
        return jobs

    def _cached(self, prompt: RenderedPrompt) -> AgentCall | None:
        if self.cfg.cache != "read":
            return None
        return self.log.cached(self.chat.model, prompt.hash)

    def _stop(self, thread: _Thread, prompts: list[RenderedPrompt], why: str) -> None:
        """The budget stops the debate before this round: its calls are recorded as not made."""
        thread.stopped = why
        for prompt in prompts:
            self._record(_Job(thread, prompt, (0, Decimal(0)), None), _not_sent(why), Decimal(0))

    def _mismatch(self, found: AgentCall | None, prompt: RenderedPrompt) -> str:
        if found is None:
            return "no call recorded"
        if found.model != self.chat.model:
            return f"recorded with model {found.model!r}, replayed with {self.chat.model!r}"
        if found.prompt_hash != prompt.hash:
            return (
                f"the prompt renders to {prompt.hash[:12]}, recorded {found.prompt_hash[:12]}: "
                "the brief's inputs or the template differ"
            )
        return ""

    def _replayed(self, thread: _Thread, prompts: list[RenderedPrompt]) -> list[_Job]:
        """Strict replay: each call answered by the decision's own recorded call, whose prompt
        must hash the same; a budget stop recorded stops the replay at the same round."""
        jobs = []
        for prompt in prompts:
            found = thread.recorded.get((prompt.agent, prompt.round))
            why = self._mismatch(found, prompt)
            if found is None or why:
                raise ReplayCacheMiss(
                    f"{thread.request.decision_id}, {prompt.agent} round {prompt.round}: {why}; "
                    "a strict replay never calls the provider"
                )
            if found.outcome is CallOutcome.BUDGET_EXCEEDED:
                self._stop(thread, prompts, found.error)
                return []
            jobs.append(_Job(thread, prompt, (0, Decimal(0)), found))
        return jobs

    def _run(self, jobs: list[_Job], budget: Budget, deadline: float, round_: int) -> None:
        """The round's calls in parallel, waited for until the deadline and no longer: a call
        still running then is a TIMEOUT (its thread finishes on its own; its answer is lost)."""
        futures = [self._pool.submit(self._call, job, deadline, round_) for job in jobs]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()) + _GRACE_S)
        for job, future in zip(jobs, futures, strict=True):
            reply = _reply_of(future, self.cfg.decision_timeout_s)
            self._record(job, reply, self._charge(budget, job, reply))

    def _call(self, job: _Job, deadline: float, round_: int) -> ChatReply:
        if job.cached is not None:
            return _replay_of(job.cached)
        tags = {
            "decision_id": str(job.thread.request.decision_id),
            "agent": job.prompt.agent,
            "round": str(round_),
        }
        try:
            return self.chat.ask(job.prompt.system, job.prompt.user, deadline, tags)
        except ReplayCacheMiss:
            raise
        except Exception as exc:
            return ChatReply(
                CallOutcome.UNAVAILABLE, "", "", 0, 0, 0.0, 1, f"{type(exc).__name__}: {exc}"
            )

    @staticmethod
    def _charge(budget: Budget, job: _Job, reply: ChatReply) -> Decimal:
        """What the call costs the budget: its reported use; when a request went out and no
        use came back (a timeout, a server that omits it), the worst case of each attempt."""
        key = job.thread.request.decision_id
        if job.cached is not None:
            return Decimal(0)
        if reply.tokens_in + reply.tokens_out == 0 and reply.attempts > 0:
            return budget.charge_worst_case(key, job.reserved, reply.attempts)
        return budget.settle(key, job.reserved, reply.tokens_in, reply.tokens_out)

    def _record(self, job: _Job, reply: ChatReply, cost: Decimal) -> None:
        agent, thread = job.prompt.agent, job.thread
        vote: Vote | None = None
        outcome, error = reply.outcome, reply.error
        if outcome.answered:
            try:
                vote = read_answer(agent, reply.text)
            except InvalidAnswer as exc:
                outcome, error = CallOutcome.INVALID, str(exc)
        call = AgentCall(
            agent=agent,
            round=job.prompt.round,
            model=self.chat.model,
            endpoint=self.chat.endpoint,
            template=job.prompt.template,
            template_version=job.prompt.template_version,
            prompt_hash=job.prompt.hash,
            prompt=job.prompt.text,
            response=reply.text,
            vote=None if vote is None else vote_json(vote),
            outcome=outcome,
            error=error,
            tokens_in=reply.tokens_in if job.cached is None else 0,
            tokens_out=reply.tokens_out if job.cached is None else 0,
            # The provider's own word (truncated: the column is short; "stop", "length"...).
            latency_ms=round(reply.latency_ms, 3),
            cost=cost,
            finish_reason=reply.finish_reason[:32],
            called_at=self.clock.now(),
        )
        thread.calls.append(call)
        thread.last[agent] = call
        if vote is not None:
            thread.votes[agent] = vote

    # -- prompts -----------------------------------------------------------------------------

    def _render(self, thread: _Thread, agent: str, round_: int) -> RenderedPrompt:
        context = thread.request.context
        role, turn = self.templates[f"tradeflow-{agent}"], self.templates["tradeflow-turn"]
        system = role.render({"symbol": context.symbol, "timeframe": _timeframe(context)})
        user = turn.render(
            {
                "round": str(round_),
                "rounds": str(self.cfg.rounds),
                "brief": _brief(context),
                "opponent": self._opponent(thread, agent) if round_ else "",
            }
        )
        version = f"{role.version}+{turn.version}"
        return RenderedPrompt(agent, round_, role.name, version, system, user)

    @staticmethod
    def _opponent(thread: _Thread, agent: str) -> str:
        other = _OTHER[agent]
        said = thread.votes.get(other)
        if said is None:
            last = thread.last.get(other)
            cause = last.outcome.value if last is not None else "no answer"
            return f"The {other.title()} could not answer ({cause}). Keep or revise your answer."
        view = json.dumps(vote_json(said), sort_keys=True, separators=(",", ":"))
        return f"The {other.title()} answered: {view}. Keep or revise your answer."

    # -- the verdict -------------------------------------------------------------------------

    def _conclude(self, thread: _Thread) -> Deliberation:
        calls = tuple(thread.calls)
        if thread.stopped:
            votes = tuple(Vote.abstain(a, "budget_exceeded", thread.stopped) for a in AGENTS)
            return Deliberation(votes, calls, thread.stopped)
        return Deliberation(tuple(self._final(thread, a) for a in AGENTS), calls)

    def _final(self, thread: _Thread, agent: str) -> Vote:
        """The agent's latest answered vote; else its abstention, or the rule agent's vote when
        failures fall back to the offline agents."""
        vote, last = thread.votes.get(agent), thread.last.get(agent)
        if vote is not None:
            if last is not None and not last.outcome.answered:  # a later revision failed
                why = f" (round {last.round} revision failed: {last.outcome.value})"
                return replace(vote, reason=(vote.reason + why)[-300:])
            return vote
        cause = last.outcome.value if last is not None else "no_call"
        detail = last.error if last is not None else ""
        rule = self.fallback.get(agent)
        if self.cfg.on_failure == "offline_agents" and rule is not None:
            (offline,) = collect_votes([rule], thread.request.context)
            return Vote(
                agent,
                offline.action,
                offline.confidence,
                f"offline fallback (llm {cause}): {offline.reason}"[:300],
            )
        return Vote.abstain(agent, cause, detail)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class CacheOnlyChat:
    """The chat model a strict replay stands behind: its name and endpoint, and no way out.
    The panel answers from the cache before it would ever ask."""

    def __init__(self, model: str, endpoint: str) -> None:
        self.model, self.endpoint = model, endpoint

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        raise ReplayCacheMiss(f"a replay asked {self.model} a new question: it must not")


def panel_name(chat: ChatModel) -> str:
    return f"llm:{chat.model}@{chat.endpoint}"


_GRACE_S = 0.05  # past the deadline, for replies already on their way back


def _replay_of(call: AgentCall) -> ChatReply:
    """A recorded call as the transport's reply: an answer as CACHED, a failure as it was."""
    outcome = CallOutcome.CACHED if call.outcome.answered else call.outcome
    return ChatReply(outcome, call.response, call.finish_reason, 0, 0, 0.0, 0, call.error)


def _not_sent(why: str) -> ChatReply:
    return ChatReply(CallOutcome.BUDGET_EXCEEDED, "", "", 0, 0, 0.0, 0, why)


def _reply_of(future: Future[ChatReply], timeout_s: float) -> ChatReply:
    if future.done():
        return future.result()
    future.cancel()  # not started yet: never sent; else it finishes unheard
    return ChatReply(
        CallOutcome.TIMEOUT, "", "", 0, 0, timeout_s * 1000, 1,
        f"no answer within the decision's {timeout_s:g} s",
    )  # fmt: skip


def _brief(context: AgentContext) -> str:
    if context.brief is None:
        raise FatalError(f"{context.symbol}: an LLM agent needs the decision's brief")
    return context.brief.render()


def _timeframe(context: AgentContext) -> str:
    return context.brief.timeframe if context.brief is not None else ""
