"""`tradeflow decision ID`: one recorded decision (action, score, regime, reason, each input's
contribution, the risk verdict, the order) and a table of the LLM calls behind its votes;
`--prompts` prints every prompt and answer in full. The API's GET /api/v1/decisions/{id} shows
the same (services/decisions.py)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.options import load_settings

if TYPE_CHECKING:
    from core.agents.calls import AgentCall, AgentUsage
    from core.records import DecisionRecord
    from services.decisions import DecisionView

console = Console()


def decision_command(
    decision_id: Annotated[
        str, typer.Argument(help="account:symbol:timeframe:candle open (Unix seconds)")
    ],
    prompts: Annotated[
        bool, typer.Option("--prompts", help="print each call's prompt and answer in full")
    ] = False,
) -> None:
    """Show one recorded decision and the LLM calls behind its votes."""
    from core.errors import TradeflowError
    from services import bootstrap
    from services.decisions import decision_with_calls

    settings = load_settings(console)
    try:
        view = decision_with_calls(bootstrap.ledger(settings), decision_id)
    except TradeflowError as exc:
        message = Text.assemble(("error: ", "red"), f"{type(exc).__name__}: {exc}")
        console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if view is None:
        # The id is the caller's text: printed as text, never read as markup.
        console.print(
            Text(f"no decision {decision_id!r} in this ledger (account {settings.account!r})")
            .append(" (ids read account:symbol:timeframe:candle open in Unix seconds)"),
            style="red", highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(2)
    print_decision(console, view, prompts)


def print_decision(console: Console, view: DecisionView, prompts: bool = False) -> None:
    """Everything a decision's text can hold (reasons, prompts, answers) is model or user
    text: it goes out as Text, so brackets in it are never taken for rich markup."""
    for line in decision_lines(view.decision):
        console.print(line, highlight=False, soft_wrap=True)
    if view.decision.votes:
        console.print(votes_table(view.decision))
    if not view.calls:
        console.print("no LLM calls (the offline panel decided, or none were made)")
        return
    console.print(calls_table(view.calls))
    console.print(Text(totals_line(view.totals)), highlight=False)
    if prompts:
        for call in view.calls:
            _print_texts(console, call)


def decision_lines(d: DecisionRecord) -> list[Text]:
    return [
        Text(f"decision {d.decision_id}", style="bold"),
        Text(
            f"{d.symbol} {d.timeframe}, candle {d.candle_time:%F %H:%M} UTC, "
            f"price {_num(d.price)}; "
            f"model {d.model_name} v{d.model_version} (feature set {d.feature_set_version}), "
            f"P(up) {d.probability:.3f}; decided {d.decided_at:%F %H:%M:%S} UTC"
        ),
        Text(f"action {d.action.value}  score {d.score:+.3f}  regime {d.regime or '-'}"),
        Text(f"reason: {d.consensus_reason}"),
        Text(f"contributions: {_contributions(d.contributions)}"),
        Text(f"risk: {_verdict(d)}"),
        Text(f"order: {d.client_order_id or 'none'}"),
    ]


def votes_table(d: DecisionRecord) -> Table:
    t = Table(title="final votes", title_justify="left")
    for col in ("agent", "action", "confidence", "reason"):
        t.add_column(col, overflow="fold")
    for v in d.votes:
        action = f"abstained ({v.abstained})" if v.abstained else v.action.value
        reason = "; ".join(v.reasons) or v.reason
        if v.risk_flags:
            reason += f" [risk flags: {', '.join(v.risk_flags)}]"
        t.add_row(Text(v.agent), Text(action), f"{v.confidence:.2f}", Text(reason))
    return t


def calls_table(calls: tuple[AgentCall, ...]) -> Table:
    t = Table(title="LLM calls", title_justify="left")
    for col in ("round", "agent", "outcome"):
        t.add_column(col)
    for col in ("tokens in/out", "latency ms", "cost"):
        t.add_column(col, justify="right")
    t.add_column("vote or error", overflow="fold")
    for c in calls:
        t.add_row(
            str(c.round),
            Text(c.agent),
            c.outcome.value,
            f"{c.tokens_in}/{c.tokens_out}",
            f"{c.latency_ms:.0f}",
            _num(c.cost),
            Text(_vote_or_error(c)),
        )
    return t


def totals_line(t: AgentUsage) -> str:
    return (
        f"{t.calls} call(s), {t.abstentions} without an answer; tokens {t.tokens_in} in, "
        f"{t.tokens_out} out; cost {_num(t.cost)}"
    )


def _print_texts(console: Console, call: AgentCall) -> None:
    console.rule(
        Text(f"round {call.round} · {call.agent} · {call.outcome.value} · {call.model} "
             f"@ {call.endpoint} · {call.template} v{call.template_version}"),
    )  # fmt: skip
    for label, text in (("prompt", call.prompt), ("response", call.response)):
        console.print(f"{label}:", style="bold")
        console.print(Text(text or "(empty)"), highlight=False, soft_wrap=True)


def _vote_or_error(c: AgentCall) -> str:
    if c.vote is None:
        return c.error or c.finish_reason or "-"
    v = c.vote
    text = f"{v.get('action', '?')} {_confidence(v.get('confidence'))}"
    reasons = v.get("reasons")
    if isinstance(reasons, list) and reasons:
        text += ": " + "; ".join(str(r) for r in reasons)
    flags = v.get("risk_flags")
    if isinstance(flags, list) and flags:
        text += f" [risk flags: {', '.join(str(f) for f in flags)}]"
    return text


def _confidence(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "?"


def _contributions(parts: Mapping[str, float]) -> str:
    if not parts:
        return "-"
    ranked = sorted(parts.items(), key=lambda kv: -abs(kv[1]))
    return ", ".join(f"{name} {value:+.3f}" for name, value in ranked)


def _verdict(d: DecisionRecord) -> str:
    if d.risk_approved is None:
        return f"not asked ({d.action.value}: no order proposed)"
    if d.risk_approved:
        return "approved"
    return "denied: " + "; ".join(str(x) for x in d.denials)


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"
