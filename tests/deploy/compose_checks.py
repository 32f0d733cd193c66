"""What docker-compose.yml must be that the compose-spec schema cannot say (it accepts any
string for `read_only`, any user, a password in `environment:`). Each check returns one line
per problem, so the tests show both that the real file passes and that a broken copy fails."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from infra.settings import NOT_SETTINGS, PREFIX, Settings

Compose = Mapping[str, Any]
Service = Mapping[str, Any]

ROOT = Path(__file__).resolve().parents[2]
SECRETS_DIR = "./deploy/secrets/"
# A variable whose name says it holds a secret may only name a file under /run/secrets.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]*:[^/\s@]+@")
ROOT_USERS = {"root", "0"}
# What tradeflow's own processes cannot run without (read from /run/secrets by Settings).
REQUIRED_SECRETS = {
    "api": {"tradeflow_kill_switch_secret", "tradeflow_database_url", "tradeflow_redis_url"},
    "worker": {"tradeflow_database_url", "tradeflow_redis_url"},
}
# A secret a service's command or health check reads by name: /run/secrets/NAME, or
# deploy/secret-env.sh's VAR=NAME arguments.
SECRET_PATH = re.compile(r"/run/secrets/([A-Za-z0-9_.-]+)")
SECRET_ENV_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=([A-Za-z0-9_.-]+)$")


def services(compose: Compose) -> Mapping[str, Service]:
    return compose.get("services") or {}


def environment(service: Service, root: Path = ROOT) -> dict[str, str]:
    """The variables a service gets: its env_file files, then `environment:` over them."""
    values: dict[str, str] = {}
    files = service.get("env_file") or []
    for name in [files] if isinstance(files, str) else files:
        values |= {k: v or "" for k, v in dotenv_values(root / name).items()}
    entries = service.get("environment") or {}
    if isinstance(entries, list):
        entries = dict(e.split("=", 1) if "=" in e else (e, "") for e in entries)
    return values | {str(k): "" if v is None else str(v) for k, v in entries.items()}


def _argv(command: Any) -> list[str]:
    return command.split() if isinstance(command, str) else [str(c) for c in command or []]


def image_problems(compose: Compose) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        image = str(svc.get("image", ""))
        if not image and not svc.get("build"):
            problems.append(f"{name}: neither image nor build")
        elif not svc.get("build") and (":" not in image or image.endswith(":latest")):
            problems.append(f"{name}: image {image!r} has no pinned tag")
    return problems


def healthcheck_problems(compose: Compose) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not isinstance(test, list) or len(test) < 2:
            problems.append(f"{name}: no healthcheck")
        elif test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: healthcheck test starts with {test[0]!r}")
    return problems


def user_problems(compose: Compose) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        user = str(svc.get("user", "")).split(":")[0]
        if user in ROOT_USERS or not user:
            problems.append(f"{name}: runs as root (user: {svc.get('user')!r})")
    return problems


def read_only_problems(compose: Compose) -> list[str]:
    """Every service built from the image: read-only root filesystem, a tmpfs at /tmp."""
    built = {n: s for n, s in services(compose).items() if s.get("build")}
    problems = [] if "api" in built else ["api: not built from the image"]
    for name, svc in built.items():
        if svc.get("read_only") is not True:
            problems.append(f"{name}: read_only is {svc.get('read_only')!r}, not true")
        tmpfs = svc.get("tmpfs") or []
        if "/tmp" not in {
            str(t).split(":")[0] for t in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)
        }:
            problems.append(f"{name}: no tmpfs at /tmp")
    return problems


def _mounted(svc: Service) -> set[str]:
    return {s if isinstance(s, str) else s.get("source", "") for s in svc.get("secrets") or []}


def _secret_env_names(argv: list[str]) -> Iterator[str]:
    """The files deploy/secret-env.sh is given (its NAME=FILE arguments, up to --)."""
    starts = [i for i, arg in enumerate(argv) if arg.endswith("secret-env.sh")]
    for arg in argv[starts[0] + 1 :] if starts else []:
        if arg == "--":
            return
        if match := SECRET_ENV_ARG.match(arg):
            yield match.group(1)


def _read_by_name(svc: Service) -> Iterator[str]:
    """Secrets a service's command, health check and environment name."""
    argv = _argv(svc.get("command"))
    texts = argv + _argv((svc.get("healthcheck") or {}).get("test"))
    for text in texts + list(environment(svc).values()):
        yield from SECRET_PATH.findall(text)
    yield from _secret_env_names(argv)


def secret_problems(compose: Compose) -> list[str]:
    declared = compose.get("secrets") or {}
    problems = []
    for name, spec in declared.items():
        if not str((spec or {}).get("file", "")).startswith(SECRETS_DIR):
            problems.append(f"secret {name}: not a file under {SECRETS_DIR}")
    used: set[str] = set()
    for name, svc in services(compose).items():
        mounted = _mounted(svc)
        used |= mounted
        problems += [
            f"{name}: mounts undeclared secret {s}" for s in sorted(mounted - set(declared))
        ]
        wanted = set(_read_by_name(svc)) | REQUIRED_SECRETS.get(name, set())
        problems += [
            f"{name}: reads secret {s} but does not mount it" for s in sorted(wanted - mounted)
        ]
    problems += [f"secret {s}: declared, mounted nowhere" for s in sorted(set(declared) - used)]
    return problems


def environment_problems(compose: Compose, root: Path = ROOT) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        for key, value in environment(svc, root).items():
            if CREDENTIALS_IN_URL.search(value):
                problems.append(f"{name}: {key} carries credentials in a URL")
            elif SECRET_NAME.search(key) and not (
                key.endswith("_FILE") and value.startswith("/run/secrets/")
            ):
                problems.append(f"{name}: {key} looks like a secret in the environment")
    return problems


def tradeflow_variable_problems(compose: Compose, root: Path = ROOT) -> list[str]:
    """Settings refuse an unknown TRADEFLOW_* variable: the container would not start."""
    known = {PREFIX + f.upper() for f in Settings.model_fields} | NOT_SETTINGS
    return [
        f"{name}: {key} names no setting"
        for name, svc in services(compose).items()
        for key in environment(svc, root)
        if key.startswith(PREFIX) and key not in known
    ]


def depends_on_problems(compose: Compose) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on as a list waits for nothing but a start")
            continue
        for target, spec in depends.items():
            if (spec or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: depends on {target} without condition service_healthy")
            if not (services(compose).get(target) or {}).get("healthcheck"):
                problems.append(f"{name}: depends on {target}, which has no healthcheck")
    return problems


def port_problems(compose: Compose) -> list[str]:
    """Published only on the host's loopback (a reverse proxy in front for anything else)."""
    return [
        f"{name}: port {port!r} published beyond 127.0.0.1"
        for name, svc in services(compose).items()
        for port in svc.get("ports") or []
        if not str(port).startswith("127.0.0.1:")
    ]


def api_healthcheck_problems(compose: Compose) -> list[str]:
    api = services(compose).get("api") or {}
    argv = _argv(api.get("command"))
    port = argv[argv.index("--port") + 1] if "--port" in argv else "8000"
    urls = [a for a in _argv((api.get("healthcheck") or {}).get("test")) if "://" in a]
    if not urls:
        return ["api: healthcheck asks no URL"]
    url = urlsplit(urls[0])
    problems = []
    if url.path != "/api/v1/health":
        problems.append(f"api: healthcheck asks {url.path}, not /api/v1/health")
    if str(url.port) != port or url.hostname not in ("127.0.0.1", "localhost"):
        problems.append(f"api: healthcheck asks {url.netloc}, the API listens on :{port}")
    return problems


CHECKS: dict[str, Callable[[Compose], list[str]]] = {
    "image": image_problems,
    "healthcheck": healthcheck_problems,
    "user": user_problems,
    "read_only": read_only_problems,
    "secrets": secret_problems,
    "environment": environment_problems,
    "tradeflow_variables": tradeflow_variable_problems,
    "depends_on": depends_on_problems,
    "ports": port_problems,
    "api_healthcheck": api_healthcheck_problems,
}
