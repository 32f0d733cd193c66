"""What every command reads the same way: the settings (one line per refused setting, exit 2)
and a UTC date option (one line, exit 2)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console

from infra.settings import Settings, SettingsError, apply_offline_env, get_settings


def load_settings(console: Console) -> Settings:
    try:
        settings = get_settings()
    except SettingsError as exc:  # one line per bad setting, never a traceback
        for line in str(exc).splitlines():
            console.print(f"[red]setting refused:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    apply_offline_env(settings.var_dir)
    return settings


def parse_utc(text: str, option: str, console: Console) -> datetime:
    """2024-01-01 or 2024-01-01T12:00 (UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        console.print(f"[red]{option} {text!r} is not a date: use 2024-01-01 or 2024-01-01T12:00")
        raise typer.Exit(2) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
