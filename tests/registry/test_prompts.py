"""The Prompt Registry adapter against a real MLflow sqlite store."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from core.agents.prompt import PromptTemplate, text_version
from core.errors import ConfigurationError
from infra.llm.prompts import BULL, TEMPLATE_NAMES, repo_templates
from registry.prompts import (
    PRODUCTION,
    PromptRegistryError,
    PromptRegistryUnavailable,
    load_prompts,
    prompt_uri,
    sync_prompts,
)


@pytest.fixture
def repo(mlflow_store: str) -> dict[str, PromptTemplate]:
    """The repository's templates, with an empty registry configured."""
    return repo_templates()


def edited(templates: dict[str, PromptTemplate], name: str) -> dict[str, PromptTemplate]:
    """`templates` with `name`'s text changed, as an edit in the repository would."""
    text = templates[name].text + "\nKeep every reason under twenty words."
    return {
        **templates,
        name: dataclasses.replace(templates[name], text=text, version=text_version(text)),
    }


def versions(name: str) -> list[int]:
    return sorted(int(v.version) for v in MlflowClient().search_prompt_versions(name))


def test_prompt_uri_when_built_then_alias_form() -> None:
    assert prompt_uri("tradeflow-bull", "production") == "prompts:/tradeflow-bull@production"


def test_sync_when_registry_empty_then_all_registered_and_production_set(
    repo: dict[str, PromptTemplate],
) -> None:
    synced = sync_prompts(repo)

    assert set(synced) == set(TEMPLATE_NAMES)
    client = MlflowClient()
    for name in TEMPLATE_NAMES:
        assert synced[name] == PromptTemplate(name, "1", repo[name].text)
        aliased = client.get_prompt_version_by_alias(name, PRODUCTION)
        assert aliased.version == 1
        assert aliased.commit_message == f"synced from the repository ({repo[name].version})"
        assert aliased.tags["source"] == "repo"
        assert aliased.tags["repo_version"] == repo[name].version


def test_sync_when_text_unchanged_then_nothing_registered(repo: dict[str, PromptTemplate]) -> None:
    first = sync_prompts(repo)

    again = sync_prompts(repo_templates())

    assert again == first
    assert all(versions(name) == [1] for name in TEMPLATE_NAMES)


def test_sync_when_text_changed_then_new_version_but_production_stays(
    repo: dict[str, PromptTemplate],
) -> None:
    sync_prompts(repo)
    changed = edited(repo, BULL)

    synced = sync_prompts(changed)

    assert versions(BULL) == [1, 2]
    v2 = MlflowClient().get_prompt_version(BULL, 2)
    assert v2.template == changed[BULL].text
    assert v2.tags["repo_version"] == changed[BULL].version
    # Moving the alias is the operator's call: the agents keep v1's text.
    assert synced[BULL] == PromptTemplate(BULL, "1", repo[BULL].text)
    assert load_prompts([BULL])[BULL] == PromptTemplate(BULL, "1", repo[BULL].text)


def test_sync_when_alias_missing_then_set_to_newest_without_registering(
    repo: dict[str, PromptTemplate],
) -> None:
    sync_prompts(repo)
    mlflow.genai.delete_prompt_alias(BULL, alias=PRODUCTION)

    synced = sync_prompts(repo)

    assert synced[BULL].version == "1"
    assert versions(BULL) == [1]
    assert MlflowClient().get_prompt_version_by_alias(BULL, PRODUCTION).version == 1


def move_alias_elsewhere(uri: str, name: str, version: int) -> None:
    """Move the alias from another process, as an operator does (the MLflow UI, a script):
    this process's prompt cache is not told."""
    script = (
        "import mlflow; mlflow.set_registry_uri(sys.argv[1]); "
        "mlflow.genai.set_prompt_alias(sys.argv[2], alias=sys.argv[3], version=int(sys.argv[4]))"
    )
    subprocess.run(
        [sys.executable, "-c", f"import sys; {script}", uri, name, PRODUCTION, str(version)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_load_when_alias_moved_elsewhere_then_next_load_sees_it(
    mlflow_store: str, repo: dict[str, PromptTemplate]
) -> None:
    sync_prompts(repo)
    changed = edited(repo, BULL)
    sync_prompts(changed)
    assert load_prompts([BULL])[BULL].version == "1"  # a load before the move, cached or not

    move_alias_elsewhere(mlflow_store, BULL, 2)

    assert load_prompts([BULL])[BULL] == PromptTemplate(BULL, "2", changed[BULL].text)


def test_load_when_alias_missing_then_registry_error_names_prompt_and_alias(
    repo: dict[str, PromptTemplate],
) -> None:
    sync_prompts(repo)

    with pytest.raises(PromptRegistryError) as raised:
        load_prompts(TEMPLATE_NAMES, alias="canary")

    assert isinstance(raised.value, ConfigurationError)
    message = str(raised.value)
    assert "canary" in message
    assert BULL in message
    assert "set_prompt_alias" in message
    assert "sync_prompts" in message


def test_load_when_prompt_never_registered_then_registry_error_names_it(mlflow_store: str) -> None:
    with pytest.raises(PromptRegistryError, match="tradeflow-bear"):
        load_prompts(["tradeflow-bear"])


def test_load_when_registry_unreachable_then_unavailable_is_retryable(
    mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow.set_registry_uri("http://127.0.0.1:9")  # the discard port: nothing listens
    try:
        with pytest.raises(PromptRegistryUnavailable, match=r"127\.0\.0\.1:9"):
            load_prompts([BULL])
    finally:
        mlflow.set_registry_uri(mlflow_store)


def test_render_when_loaded_then_every_placeholder_filled(repo: dict[str, PromptTemplate]) -> None:
    sync_prompts(repo)

    loaded = load_prompts(TEMPLATE_NAMES)

    system = loaded[BULL].render({"symbol": "BTC/USDT", "timeframe": "1h"})
    user = loaded["tradeflow-turn"].render(
        {"round": "1", "rounds": "2", "brief": '{"rsi": 71.5}', "opponent": ""}
    )
    assert "BTC/USDT on 1h" in system
    assert '{"rsi": 71.5}' in user
    assert "{{" not in system + user
