"""MLflow's Prompt Registry: the repository's templates synced in, the agents' loaded by alias.

The repository (infra/llm/prompts) is where a template is written; the registry is where an
operator versions, diffs and rolls it back. A sync registers a changed text as a new version but
moves the alias only when it does not exist yet: where the alias points is the operator's call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.agents.prompt import PromptTemplate
from core.errors import ConfigurationError, RetryableError

log = logging.getLogger(__name__)

PRODUCTION = "production"
# MLflow's answers meaning "no such prompt or alias" (NOT_FOUND: a tracking server's REST answer;
# INVALID_PARAMETER_VALUE: a missing alias in a sqlite store, or a name that is a model).
_NOT_THERE = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


class PromptRegistryError(ConfigurationError):
    """A prompt or alias the agents need is not in the registry (or is not a text prompt)."""


class PromptRegistryUnavailable(RetryableError):
    """The registry did not answer: try again later."""


def prompt_uri(name: str, alias: str = PRODUCTION) -> str:
    return f"prompts:/{name}@{alias}"


def sync_prompts(
    templates: Mapping[str, PromptTemplate], alias: str = PRODUCTION
) -> dict[str, PromptTemplate]:
    """Register each template whose text differs from its newest registered version; point
    `alias` at the newest version only where it is missing. Returns what `alias` points at."""
    client = MlflowClient()
    return {template.name: _sync(client, template, alias) for template in templates.values()}


def load_prompts(names: Iterable[str], alias: str = PRODUCTION) -> dict[str, PromptTemplate]:
    """The version each `prompts:/NAME@ALIAS` points at now (no alias cache: a moved alias is
    seen at the next load)."""
    return {name: load_prompt(name, alias) for name in names}


def load_prompt(name: str, alias: str = PRODUCTION) -> PromptTemplate:
    uri = prompt_uri(name, alias)
    try:
        # link_to_model=False: tradeflow keeps no active LoggedModel, and the link is a thread.
        found = mlflow.genai.load_prompt(uri, cache_ttl_seconds=0, link_to_model=False)
    except MlflowException as exc:
        raise _translated(exc, name, alias) from exc
    return _template(found, alias)


def load_prompt_version(name: str, version: str) -> PromptTemplate:
    """One registered version by number (a replay renders the prompts a decision used)."""
    uri = f"prompts:/{name}/{version}"
    try:
        found = mlflow.genai.load_prompt(uri, link_to_model=False)
    except MlflowException as exc:
        raise _translated(exc, name, f"version {version}") from exc
    return _template(found, f"version {version}")


def _sync(client: MlflowClient, template: PromptTemplate, alias: str) -> PromptTemplate:
    name = template.name
    try:
        newest = _newest(client, name)
        if newest is None or newest.template != template.text:
            newest = mlflow.genai.register_prompt(
                name=name,
                template=template.text,
                commit_message=f"synced from the repository ({template.version})",
                tags={"source": "repo", "repo_version": template.version},
            )
            log.info("prompt %s: registered v%s (%s)", name, newest.version, template.version)
        current = _aliased(client, name, alias)
        if current is None:
            mlflow.genai.set_prompt_alias(name, alias=alias, version=int(newest.version))
            log.info("prompt %s: alias %s set to v%s", name, alias, newest.version)
            current = newest
    except MlflowException as exc:
        raise _translated(exc, name, alias) from exc
    return _template(current, alias)


def _newest(client: MlflowClient, name: str) -> Any | None:
    try:
        versions = client.search_prompt_versions(name, max_results=1)  # newest first
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    return versions[0] if versions else None


def _aliased(client: MlflowClient, name: str, alias: str) -> Any | None:
    try:
        return client.get_prompt_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _NOT_THERE:
            return None
        raise


def _template(version: Any, alias: str) -> PromptTemplate:
    if not isinstance(version.template, str):  # a chat prompt (a list of messages)
        raise PromptRegistryError(
            f"{prompt_uri(version.name, alias)} is v{version.version}, a chat prompt: the agents "
            "need a text template; point the alias at a text version"
        )
    return PromptTemplate(version.name, str(version.version), version.template)


def _translated(exc: MlflowException, name: str, alias: str) -> Exception:
    uri = prompt_uri(name, alias)
    where = mlflow.get_registry_uri()
    if exc.error_code in _NOT_THERE:
        return PromptRegistryError(
            f"prompt {name!r} alias {alias!r} ({uri}) is not in the MLflow Prompt Registry at "
            f"{where}: {exc.message}. Register the repository's templates with "
            f"registry.prompts.sync_prompts, or point the alias at a version with "
            f"mlflow.genai.set_prompt_alias({name!r}, alias={alias!r}, version=N)"
        )
    return PromptRegistryUnavailable(f"prompt registry at {where} did not answer for {uri}: {exc}")
