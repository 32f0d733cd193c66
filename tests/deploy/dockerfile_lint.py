"""The Dockerfile read as Docker reads it (instructions, continuation lines, comments) and the
rules it must keep, each returning one line per problem. No engine builds it here and hadolint
is not available, so these are the checks."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from infra.settings import OFFLINE_ENV

BASE = "python:3.11-slim"
TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]*:[^/\s@]+@")


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # continuation lines joined
    line: int  # where it starts, 1-based


def parse(text: str) -> list[Instruction]:
    """Instructions in order; comment lines (parser directives too) are skipped, also inside
    a continued instruction, as Docker does."""
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            continue
        if parts and line.startswith("#"):
            continue
        start = start if parts else number
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(parts).partition(" ")
            found.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    return found


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return list(instructions[starts[-1] :]) if starts else []


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """ENV/ARG NAME=VALUE pairs (and ARG NAME without a default)."""
    pairs = {}
    for token in shlex.split(instruction.args):
        name, _, value = token.partition("=")
        pairs[name] = value
    return pairs


def _exec_form(args: str) -> list[str]:
    """CMD ["a", "b"] as its arguments; the shell form as one string."""
    args = args.removeprefix("CMD").strip()
    return [str(a) for a in json.loads(args)] if args.startswith("[") else [args]


def base_problems(instructions: Sequence[Instruction]) -> list[str]:
    froms = [i for i in instructions if i.keyword == "FROM"]
    return [f"line {i.line}: FROM {i.args}, not {BASE}" for i in froms if i.args.split()[0] != BASE]


def user_problems(instructions: Sequence[Instruction]) -> list[str]:
    """The final stage switches to a user that is not root before its CMD."""
    stage = final_stage(instructions)
    cmds = [n for n, i in enumerate(stage) if i.keyword in ("CMD", "ENTRYPOINT")]
    if not cmds:
        return ["final stage has no CMD"]
    users = [i for i in stage[: cmds[-1]] if i.keyword == "USER"]
    if not users:
        return ["final stage runs as root: no USER before CMD"]
    if users[-1].args.split(":")[0] in ("root", "0"):
        return [f"line {users[-1].line}: USER {users[-1].args} is root"]
    return []


def healthcheck_problems(instructions: Sequence[Instruction]) -> list[str]:
    checks = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].args.strip().upper() == "NONE":
        return ["final stage has no HEALTHCHECK"]
    args = checks[-1].args
    command = _exec_form(args[args.index("CMD") :]) if "CMD" in args else []
    if not any(a.endswith("/api/v1/health") for a in command) or command[:1] != ["python"]:
        return [f"line {checks[-1].line}: HEALTHCHECK does not ask /api/v1/health with python"]
    return []


def secret_problems(instructions: Sequence[Instruction]) -> list[str]:
    """No ENV or ARG names a secret or carries credentials; nothing copies the secrets in."""
    problems = []
    for ins in instructions:
        if ins.keyword in ("ENV", "ARG"):
            for name, value in env_pairs(ins).items():
                if SECRET_NAME.search(name) or CREDENTIALS_IN_URL.search(value):
                    problems.append(f"line {ins.line}: {ins.keyword} {name} holds a secret")
        if ins.keyword in ("COPY", "ADD") and re.search(r"secrets|\.env\b", ins.args):
            problems.append(f"line {ins.line}: {ins.keyword} {ins.args} copies secrets in")
    return problems


def torch_problems(instructions: Sequence[Instruction]) -> list[str]:
    """torch==2.13.0 from the CPU index, alone, before anything else is installed."""
    installs = [i for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    if not installs or TORCH not in installs[0].args:
        return [f"the first pip install is not {TORCH}"]
    words = shlex.split(installs[0].args.split("pip install", 1)[1])
    packages = [w for w in words if not w.startswith("-") and w != CPU_INDEX]
    if packages != [TORCH] or CPU_INDEX not in words:
        return [f"line {installs[0].line}: {TORCH} not alone from {CPU_INDEX}"]
    return []


def offline_env_problems(instructions: Sequence[Instruction]) -> list[str]:
    """`prefect server` and `mlflow server` are not tradeflow's commands: the image sets the
    offline switches tradeflow sets for its own (infra/settings.py OFFLINE_ENV)."""
    env: dict[str, str] = {}
    for ins in final_stage(instructions):
        if ins.keyword == "ENV":
            env |= env_pairs(ins)
    return [f"ENV {k}={v} missing" for k, v in OFFLINE_ENV.items() if env.get(k) != v]


RULES: dict[str, Callable[[Sequence[Instruction]], list[str]]] = {
    "base": base_problems,
    "user": user_problems,
    "healthcheck": healthcheck_problems,
    "secrets": secret_problems,
    "torch": torch_problems,
    "offline_env": offline_env_problems,
}
