"""The Dockerfile and .dockerignore, checked by reading them (no engine builds the image here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from docker.utils.build import exclude_paths  # docker-py: Docker's own .dockerignore rules

from tests.deploy.conftest import ROOT
from tests.deploy.dockerfile_lint import RULES, Instruction, parse

GOOD = """\
# syntax=docker/dockerfile:1
FROM python:3.11-slim
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
RUN pip install .
USER 10001
HEALTHCHECK CMD ["python", "/app/deploy/healthcheck.py", "http://127.0.0.1:8000/api/v1/health"]
CMD ["tradeflow", "serve"]
"""


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse((ROOT / "Dockerfile").read_text())


def test_parse_when_lines_continue_and_comments_interleave_then_one_instruction_each() -> None:
    text = "# c\nFROM a AS b\nENV A=1 \\\n    # inside\n    B='two words'\n\nrun echo\n"
    assert parse(text) == [
        Instruction("FROM", "a AS b", 2),
        Instruction("ENV", "A=1 B='two words'", 3),
        Instruction("RUN", "echo", 7),
    ]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_dockerfile_when_linted_then_no_problems(dockerfile: list[Instruction], rule: str) -> None:
    assert RULES[rule](dockerfile) == []


def test_dockerfile_when_read_then_the_api_is_the_default_command_on_its_port(
    dockerfile: list[Instruction],
) -> None:
    [cmd] = [i for i in dockerfile if i.keyword == "CMD"]
    assert cmd.args == '["tradeflow", "serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert "8000" in [i.args for i in dockerfile if i.keyword == "EXPOSE"]


@pytest.mark.parametrize(
    ("change", "rule", "problem"),
    [
        (("USER 10001\n", "USER root\n"), "user", "USER root is root"),
        (("USER 10001\n", ""), "user", "no USER before CMD"),
        (("HEALTHCHECK CMD", "HEALTHCHECK NONE\n#"), "healthcheck", "no HEALTHCHECK"),
        (("/api/v1/health", "/health"), "healthcheck", "does not ask /api/v1/health"),
        (("USER 10001\n", "ENV DB_PASSWORD=hunter2\nUSER 10001\n"), "secrets", "DB_PASSWORD"),
        (("USER 10001\n", "ARG API_KEY\nUSER 10001\n"), "secrets", "ARG API_KEY holds a secret"),
        (
            ("USER 10001\n", "ENV TRADEFLOW_DATABASE_URL=postgresql://u:pw@db/x\nUSER 10001\n"),
            "secrets",
            "TRADEFLOW_DATABASE_URL holds a secret",
        ),
        (("USER 10001\n", "COPY deploy/secrets /run/secrets\nUSER 10001\n"), "secrets", "copies"),
        ((" torch==2.13.0", " torch==2.13.0 numpy"), "torch", "not alone"),
        (("--index-url https://download.pytorch.org/whl/cpu ", ""), "torch", "not alone"),
        (
            ("RUN pip install --index", "RUN pip install numpy\nRUN pip install --index"),
            "torch",
            "first",
        ),
        (("python:3.11-slim", "python:3.12-slim"), "base", "not python:3.11-slim"),
    ],
)
def test_lint_when_a_rule_is_broken_then_it_names_the_line(
    change: tuple[str, str], rule: str, problem: str
) -> None:
    assert RULES[rule](parse(GOOD)) == []  # the sample keeps the rule before the change
    broken = parse(GOOD.replace(*change))
    assert any(problem in line for line in RULES[rule](broken))


def _tree(root: Path, paths: list[str]) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")


def test_dockerignore_when_applied_then_secrets_state_and_tests_stay_out(tmp_path: Path) -> None:
    """Docker's own matching (docker-py), over a tree with a file of each kind."""
    kept = [
        "pyproject.toml",
        "prefect.yaml",
        "flows/trade.py",
        "infra/sample_data/BTC_USDT-1h.feather",
        "infra/migrations/versions/0001_initial.py",
        "deploy/healthcheck.py",
        "deploy/secret-env.sh",
        "deploy/worker.sh",
        "deploy/tradeflow.env",
    ]
    left_out = [
        "deploy/secrets/tradeflow_kill_switch_secret",
        "deploy/secrets/postgres_password",
        ".env",
        ".env.production",
        "var/ledger.db",
        "var/mlflow.db",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/fixtures/compose-spec.json",
        "infra/__pycache__/settings.cpython-311.pyc",
        "mlruns/0/meta.yaml",
        "ledger.db",
    ]
    _tree(tmp_path, kept + left_out)
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p for p in patterns if p.strip() and not p.startswith("#")]
    sent = exclude_paths(str(tmp_path), patterns)
    assert sorted(p for p in sent if (tmp_path / p).is_file()) == sorted(kept)


def test_dockerignore_when_applied_then_every_file_the_image_runs_is_sent() -> None:
    """What the Dockerfile, compose commands and prefect.yaml name, in the real tree."""
    patterns = [
        p
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    needed = {
        "pyproject.toml",
        "prefect.yaml",
        "deploy/healthcheck.py",
        "deploy/secret-env.sh",
        "deploy/worker.sh",
        *(d["entrypoint"].split(":")[0] for d in deployments),
    }
    assert all((ROOT / n).is_file() for n in needed)
    sent = {p for p in exclude_paths(str(ROOT), patterns) if p in needed}
    assert sent == needed
