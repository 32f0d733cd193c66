"""The shape of the code: imports point down the layers, functions stay small, ruff is clean.

Layers: flows -> tasks -> services -> core; infra and registry implement core's ports and
depend on core alone; services.bootstrap (with services.backtest.compose, its part for one
backtest run) is the one place in services that builds adapters;
serving -> services; nothing but the CLI imports flows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"core", "infra", "registry", "services", "tasks", "flows", "serving", "cli"}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "infra": {"core", "infra"},
    "registry": {"core", "registry"},
    "services": {"core", "services"},
    "services.bootstrap": {"core", "services", "infra", "registry"},
    "services.backtest.compose": {"core", "services", "infra", "registry"},
    "tasks": {"core", "services", "tasks"},
    "flows": {"core", "services", "tasks", "flows"},
    "serving": {"core", "services", "serving"},
    "cli": FIRST_PARTY,
}
MAX_FUNCTION_LINES = 50


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _rule(module: str) -> set[str]:
    """The most specific rule for a module (services.bootstrap before services)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in ALLOWED:
            return ALLOWED[".".join(parts[:n])]
    raise KeyError(module)


def import_violations(path: Path, module: str) -> list[str]:
    """Every first-party import (top-level or inside a function) its layer may not make."""
    allowed = _rule(module)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in FIRST_PARTY and top not in allowed and not _allowed_exactly(name, allowed):
                found.append(f"{module}:{node.lineno} imports {name}")
    return found


def _allowed_exactly(name: str, allowed: set[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed if "." in a)


def _sources() -> list[Path]:
    return sorted(
        p
        for package in FIRST_PARTY
        for p in (ROOT / package).rglob("*.py")
        if "migrations" not in p.parts
    )


def test_imports_when_every_module_scanned_then_all_point_down_the_layers() -> None:
    files = _sources()
    assert len(files) > 60
    problems = [v for f in files for v in import_violations(f, _module(f))]
    assert problems == []


def test_import_scanner_when_a_layer_imports_upwards_then_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from infra.ledger.ledger import Ledger\n"
        "def f():\n    from flows.pipeline import pipeline\n"
        "from core.types import Symbol\n"
    )
    assert len(import_violations(bad, "services.replay")) == 2
    assert import_violations(bad, "services.bootstrap") == [
        "services.bootstrap:3 imports flows.pipeline"
    ]
    assert len(import_violations(bad, "serving.app")) == 2
    assert import_violations(bad, "cli.main") == []


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {length} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]


def test_functions_when_measured_then_none_longer_than_fifty_lines() -> None:
    files = [
        p
        for folder in (*FIRST_PARTY, "tests", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if "migrations" not in p.parts
    ]
    assert [v for f in files for v in long_functions(f)] == []


def test_ruff_when_run_then_lint_complexity_and_format_clean() -> None:
    """ruff's rules include C901: no function above cyclomatic complexity 12."""
    ruff = str(Path(sys.executable).parent / "ruff")
    lint = subprocess.run(
        [ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [ruff, "format", "--no-cache", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout
