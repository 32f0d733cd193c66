"""The OpenAPI document, fuzzed: schemathesis generates requests for every operation it
declares (bodies, headers, query and path parameters, valid and not) and none may answer 5xx.

Against the real app over a real SQLite ledger, with an admin token (every route reachable) and
the model registry left empty (the ML routes answer what an empty registry means). A 5xx an
operation documents (readiness' 503 "not ready": there is no champion) is its answer, not a
failure; any other 5xx fails. Bounded:
a few dozen examples per operation, so the suite stays fast; the seed is derandomised so a
failure reproduces.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from core.auth import Scope
from infra.settings import Settings
from services import bootstrap
from serving.app import create_app
from tests.serving.conftest import SECRET
from tests.serving.tokens import bearer, issue_token

EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[schemathesis.BaseSchema, str]:
    var: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{var / 'ledger.db'}"
    config = Settings(
        database_url=url,
        kill_switch_secret=SECRET,
        var_dir=var,
        mlflow_tracking_uri=f"sqlite:///{var / 'mlflow.db'}",
        api_rate_limit="1000000/second",  # the fuzzer's pace is not what is under test here
    )
    bootstrap.ledger(config)
    token = issue_token(url, Scope.ADMIN, name="fuzz")
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(config)), token


def _fuzz(operation: object, token: str) -> None:
    """Up to EXAMPLES generated cases of one operation; raises on the first 5xx."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=bearer(token))
        documented = set(case.operation.definition.raw.get("responses", {}))
        if response.status_code >= 500 and str(response.status_code) not in documented:
            case.validate_response(response, checks=[not_a_server_error])

    run()


def test_every_operation_when_fuzzed_then_never_a_server_error(
    fuzzed: tuple[schemathesis.BaseSchema, str],
) -> None:
    """Every operation is fuzzed, and every one that answered 5xx is named with its case
    (schemathesis' pytest plugin does not run under this pytest: its nodes lack `_nodeid`)."""
    schema, token = fuzzed
    failures, operations = {}, 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            _fuzz(operation, token)
        except Exception as exc:  # every operation runs; all failures are reported together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert operations >= 10, f"only {operations} operations in the OpenAPI document"
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
