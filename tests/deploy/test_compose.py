"""docker-compose.yml: valid against the Compose Specification's schema (no compose CLI or
engine here), and what the schema cannot say (tests/deploy/compose_checks.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from infra.settings import Settings
from tests.deploy import compose_checks
from tests.deploy.compose_checks import CHECKS, environment
from tests.deploy.conftest import ROOT

SCHEMA = ROOT / "tests/fixtures/compose-spec.json"
SERVICES = {"postgres", "redis", "prefect-server", "worker", "mlflow", "api"}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)  # the schema says draft-07
    return jsonschema.Draft7Validator(schema)


def _messages(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_when_validated_against_the_compose_spec_then_no_errors(
    validator: jsonschema.Draft7Validator, compose: dict[str, Any]
) -> None:
    assert _messages(validator, compose) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("services", "api", "helthcheck"), {}, "'helthcheck' does not match"),
        (("services", "api", "depends_on", "postgres", "condition"), "healthy", "'depends_on']: {"),
        (
            ("secrets", "postgres_password"),
            {"fil": "x"},
            "'postgres_password']: 'fil' does not match",
        ),
    ],
)
def test_compose_schema_when_a_key_or_value_is_wrong_then_it_says_where(
    validator: jsonschema.Draft7Validator,
    compose: dict[str, Any],
    path: tuple[str, ...],
    value: object,
    message: str,
) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(message in m for m in _messages(validator, broken))


def test_compose_when_read_then_it_runs_the_issue_s_six_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_compose_when_checked_then_no_problems(compose: dict[str, Any], check: str) -> None:
    assert CHECKS[check](compose) == []


def _api(c: dict[str, Any]) -> dict[str, Any]:
    return c["services"]["api"]


# Each: what breaks the file, the check that must catch it, a part of the line it must print.
BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "no api healthcheck",
        lambda c: _api(c).pop("healthcheck"),
        "healthcheck",
        "api: no healthcheck",
    ),
    ("api as root", lambda c: _api(c).update(user="0:0"), "user", "api: runs as root"),
    ("api without user", lambda c: _api(c).pop("user"), "user", "api: runs as root"),
    (
        "api writable root",
        lambda c: _api(c).update(read_only="true"),
        "read_only",
        "read_only is 'true'",
    ),
    ("api without tmpfs", lambda c: _api(c).pop("tmpfs"), "read_only", "api: no tmpfs at /tmp"),
    (
        "unpinned image",
        lambda c: c["services"]["redis"].update(image="redis"),
        "image",
        "no pinned tag",
    ),
    ("no image", lambda c: c["services"]["redis"].pop("image"), "image", "neither image nor build"),
    (
        "password in environment",
        lambda c: c["services"]["postgres"]["environment"].update(POSTGRES_PASSWORD="x" * 12),
        "environment",
        "POSTGRES_PASSWORD looks like a secret",
    ),
    (
        "credentials in a URL",
        lambda c: _api(c)["environment"].update(TRADEFLOW_DATABASE_URL="postgresql://u:pw@db/x"),
        "environment",
        "TRADEFLOW_DATABASE_URL carries credentials",
    ),
    (
        "misspelt setting",
        lambda c: _api(c)["environment"].update(TRADEFLOW_VAR_DRI="/x"),
        "tradeflow_variables",
        "TRADEFLOW_VAR_DRI names no setting",
    ),
    (
        "secret from the environment",
        lambda c: c["secrets"].update(postgres_password={"environment": "PGPW"}),
        "secrets",
        "not a file under ./deploy/secrets/",
    ),
    (
        "api without its kill-switch secret",
        lambda c: _api(c)["secrets"].remove("tradeflow_kill_switch_secret"),
        "secrets",
        "api: reads secret tradeflow_kill_switch_secret but does not mount it",
    ),
    (
        "secret-env.sh given an unmounted secret",
        lambda c: c["services"]["mlflow"].update(secrets=[]),
        "secrets",
        "mlflow: reads secret mlflow_backend_store_uri but does not mount it",
    ),
    (
        "healthcheck reading an unmounted secret",
        lambda c: c["services"]["redis"].update(secrets=[]),
        "secrets",
        "redis: reads secret redis_conf but does not mount it",
    ),
    (
        "undeclared secret",
        lambda c: _api(c)["secrets"].append("tradeflow_llm_api_key"),
        "secrets",
        "api: mounts undeclared secret tradeflow_llm_api_key",
    ),
    (
        "depends_on as a list",
        lambda c: _api(c).update(depends_on=["postgres"]),
        "depends_on",
        "waits for nothing but a start",
    ),
    (
        "depends_on started, not healthy",
        lambda c: _api(c)["depends_on"]["postgres"].update(condition="service_started"),
        "depends_on",
        "api: depends on postgres without condition service_healthy",
    ),
    (
        "port on every interface",
        lambda c: _api(c).update(ports=["8000:8000"]),
        "ports",
        "published beyond 127.0.0.1",
    ),
    (
        "api healthcheck on another path",
        lambda c: _api(c)["healthcheck"]["test"].__setitem__(-1, "http://127.0.0.1:8000/health"),
        "api_healthcheck",
        "asks /health, not /api/v1/health",
    ),
    (
        "api healthcheck on another port",
        lambda c: _api(c).update(command=["tradeflow", "serve", "--port", "9000"]),
        "api_healthcheck",
        "the API listens on :9000",
    ),
]


@pytest.mark.parametrize(
    ("change", "check", "line"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_compose_when_broken_then_the_check_names_the_problem(
    compose: dict[str, Any], change: Callable[[dict[str, Any]], None], check: str, line: str
) -> None:
    broken = copy.deepcopy(compose)
    change(broken)
    assert any(line in problem for problem in CHECKS[check](broken))


def test_env_file_when_read_then_every_line_is_a_known_setting_and_nothing_secret(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """deploy/tradeflow.env is read through the same checks; a secret added to it is caught."""
    api = compose["services"]["api"]
    assert environment(api)["TRADEFLOW_LOG_FORMAT"] == "json"  # the file is read at all
    copy_env = tmp_path / "deploy/tradeflow.env"
    copy_env.parent.mkdir()
    copy_env.write_text(
        (ROOT / "deploy/tradeflow.env").read_text() + "TRADEFLOW_LLM_API_KEY=sk-1\n"
    )
    problems = compose_checks.environment_problems({"services": {"api": api}}, root=tmp_path)
    assert problems == ["api: TRADEFLOW_LLM_API_KEY looks like a secret in the environment"]


def test_tradeflow_services_when_calling_mlflow_then_their_host_is_one_mlflow_allows(
    compose: dict[str, Any],
) -> None:
    """MLflow refuses unknown Host headers (DNS rebinding): tradeflow's must be allowed."""
    allowed = environment(compose["services"]["mlflow"])["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    for name in ("api", "worker"):
        uri = urlsplit(environment(compose["services"][name])["TRADEFLOW_MLFLOW_TRACKING_URI"])
        assert uri.netloc in allowed, name


def test_worker_when_read_then_it_talks_to_the_compose_prefect_server(
    compose: dict[str, Any],
) -> None:
    server = environment(compose["services"]["prefect-server"])
    api_url = urlsplit(environment(compose["services"]["worker"])["PREFECT_API_URL"])
    assert (api_url.hostname, str(api_url.port), api_url.path) == (
        "prefect-server",
        server["PREFECT_SERVER_API_PORT"],
        "/api",
    )


def test_api_and_worker_when_read_then_they_share_the_var_volume_at_the_var_dir(
    compose: dict[str, Any],
) -> None:
    """The paper exchange's book and the models' artifacts: one copy, both processes."""
    for name in ("api", "worker"):
        svc = compose["services"][name]
        var_dir = environment(svc)["TRADEFLOW_VAR_DIR"]
        assert f"tradeflow-var:{var_dir}" in svc["volumes"], name


def _with_override(compose: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge for what the override has: secret lists appended, secrets added."""
    merged = copy.deepcopy(compose)
    for name, svc in override["services"].items():
        merged["services"][name]["secrets"] += svc["secrets"]
    merged["secrets"] |= override["secrets"]
    return merged


def test_live_override_when_merged_then_valid_and_the_api_and_worker_get_the_exchange_keys(
    validator: jsonschema.Draft7Validator, compose: dict[str, Any]
) -> None:
    override = yaml.safe_load((ROOT / "deploy/compose.live.yml").read_text())
    assert _messages(validator, override) == []
    merged = _with_override(compose, override)
    assert _messages(validator, merged) == []
    assert {name: check(merged) for name, check in CHECKS.items() if check(merged)} == {}
    for secret in override["secrets"]:  # each a secret setting, read from /run/secrets
        field = Settings.model_fields[secret.removeprefix("tradeflow_")]
        assert SecretStr in getattr(field.annotation, "__args__", (field.annotation,)), secret
        for name in ("api", "worker"):
            assert secret in merged["services"][name]["secrets"]
