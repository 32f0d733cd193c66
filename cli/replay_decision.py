"""`tradeflow replay-decision ID` (or `--all`): recompute recorded decisions bit for bit from the
stored candles, the model version they used, their risk state and the agents' cached answers,
and show that each is identical, or exactly what differs and why. Never calls an LLM provider.

Exit 0: every decision identical; 1: one differs; 2: one cannot be replayed.
Registered in cli/main.py as `app.command("replay-decision")(replay_decision_command)`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cli.options import load_settings

if TYPE_CHECKING:
    from core.agents.panel import Panel
    from services.decision_replay import ReplayResult

console = Console()


def replay_decision_command(
    decision_id: Annotated[str | None, typer.Argument(help="the decision's id")] = None,
    every: Annotated[
        bool, typer.Option("--all", help="every decision of the account that kept provenance")
    ] = False,
) -> None:
    """Replay recorded decisions and compare them with what was recorded."""
    if (decision_id is None) == (not every):
        console.print("[red]give one decision id, or --all", highlight=False)
        raise typer.Exit(2)
    from core.errors import FatalError
    from services import bootstrap
    from services.decision_replay import replay_decision

    settings = load_settings(console)
    ledger = bootstrap.ledger(settings)
    ids = (
        [decision_id]
        if decision_id is not None
        else [d.decision_id for d in ledger.orders.decisions(settings.account) if d.provenance]
    )
    cfg, load = bootstrap.decision_config(settings), bootstrap.model_loader(settings)
    panels: dict[str, Panel] = {}
    worst = 0
    for did in ids:
        record = ledger.orders.decision(did)
        try:
            provenance = record.provenance if record else {}
            key = json.dumps(provenance.get("panel_settings", {}), sort_keys=True)
            if key not in panels:
                panels[key] = bootstrap.replay_panel(settings, provenance)
            result = replay_decision(ledger, did, load, panels[key], cfg)
        except FatalError as exc:
            console.print(f"[red]{did}: cannot replay: {exc}", highlight=False, soft_wrap=True)
            worst = 2
            continue
        worst = max(worst, _show(result))
    if every:
        console.print(f"{len(ids)} decision(s) replayed", highlight=False)
    raise typer.Exit(worst)


def _show(result: ReplayResult) -> int:
    d = result.replayed
    if result.identical:
        console.print(
            f"[green]{result.decision_id}: identical[/] ({d.consensus.action.value}, score "
            f"{d.consensus.score:+.6f}, {len(d.calls)} agent answer(s) from the cache)",
            highlight=False,
        )
        return 0
    console.print(f"[red]{result.decision_id}: differs", highlight=False)
    for line in result.differences:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for cause in result.causes or ["no setting, code or agent changed that would explain it"]:
        console.print(f"  why: {cause}", highlight=False, soft_wrap=True)
    return 1
