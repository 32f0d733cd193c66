"""core/ never imports adapters or reads the environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
BANNED = {
    "prefect",
    "fastapi",
    "ccxt",
    "mlflow",
    "sqlalchemy",
    "alembic",
    "infra",
    "registry",
    "tasks",
    "flows",
    "serving",
    "pydantic_settings",
    "openai",
    "services",
}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [
            f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in BANNED
        ]
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            found.append(f"{path.name}:{node.lineno} reads os.{node.attr}")
    return found


def test_core_sources_when_scanned_then_import_no_adapter_and_read_no_env() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    problems = [v for f in files for v in _violations(f)]
    assert problems == []


def test_import_every_core_module_when_loaded_then_no_adapter_enters_sys_modules() -> None:
    modules = [
        ".".join(p.relative_to(CORE.parent).with_suffix("").parts) for p in CORE.rglob("*.py")
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(BANNED)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=CORE.parent
    )
    assert out.stdout.strip() == ""


def test_scanner_when_given_a_banned_import_then_reports_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom prefect import flow\nx = os.environ['A']\n")
    assert len(_violations(bad)) == 2
