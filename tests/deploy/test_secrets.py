"""The deployment's secret files: deploy/make-secrets.sh writes what docker-compose.yml mounts,
tradeflow's settings read them, deploy/secret-env.sh hands Prefect and MLflow theirs."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.settings import load_settings
from tests.deploy.conftest import COMPOSE_FILE, ROOT, make_secrets

SECRET_ENV = str(ROOT / "deploy/secret-env.sh")


def _files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def _password(url: str) -> str | None:
    return urlsplit(url.strip()).password


def test_make_secrets_when_run_then_it_writes_every_secret_compose_declares(
    made_secrets: Path, compose: dict[str, Any]
) -> None:
    declared = {Path(spec["file"]).name for spec in compose["secrets"].values()}
    assert set(_files(made_secrets)) == declared
    assert all(p.stat().st_size > 1 for p in made_secrets.iterdir())


def test_make_secrets_when_run_then_the_folder_is_private_and_the_files_readable_by_containers(
    made_secrets: Path,
) -> None:
    assert stat.S_IMODE(made_secrets.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in made_secrets.iterdir()} == {0o644}


def test_make_secrets_when_run_then_the_urls_carry_the_passwords_it_made(
    made_secrets: Path,
) -> None:
    files = _files(made_secrets)
    postgres = files["postgres_password"].strip()
    redis = files["redis_conf"].strip().removeprefix("requirepass ")
    assert len(postgres) == len(redis) == 64  # 32 random bytes, hex
    assert postgres != redis
    for name in ("tradeflow_database_url", "prefect_database_url", "mlflow_backend_store_uri"):
        assert _password(files[name]) == postgres, name
    assert _password(files["tradeflow_redis_url"]) == redis
    assert files["tradeflow_kill_switch_secret"].strip() not in (postgres, redis)


def test_make_secrets_when_run_again_then_nothing_changes(made_secrets: Path) -> None:
    before = _files(made_secrets)
    result = make_secrets(made_secrets)
    assert (_files(made_secrets), result.stdout) == (before, "")


def test_make_secrets_when_a_url_was_deleted_then_it_is_rebuilt_from_the_kept_password(
    made_secrets: Path,
) -> None:
    before = _files(made_secrets)
    (made_secrets / "tradeflow_database_url").unlink()
    (made_secrets / "tradeflow_redis_url").unlink()
    result = make_secrets(made_secrets)
    assert _files(made_secrets) == before
    assert result.stdout.splitlines() == [
        f"wrote {made_secrets}/tradeflow_database_url",
        f"wrote {made_secrets}/tradeflow_redis_url",
    ]


def test_make_secrets_when_run_twice_elsewhere_then_the_secrets_differ(tmp_path: Path) -> None:
    make_secrets(tmp_path / "a")
    make_secrets(tmp_path / "b")
    assert (
        _files(tmp_path / "a")["tradeflow_kill_switch_secret"]
        != (_files(tmp_path / "b")["tradeflow_kill_switch_secret"])
    )


def test_made_secrets_when_read_by_settings_then_tradeflow_gets_them(
    made_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files the api container mounts, as its Settings read them from /run/secrets."""
    monkeypatch.setenv("TRADEFLOW_SECRETS_DIR", str(made_secrets))
    files = _files(made_secrets)
    settings = load_settings()
    assert settings.kill_switch_secret is not None
    assert settings.kill_switch_secret.get_secret_value() == (
        files["tradeflow_kill_switch_secret"].strip()
    )
    assert settings.ledger_url == files["tradeflow_database_url"].strip()
    assert settings.redis_url == files["tradeflow_redis_url"].strip()


def test_made_secrets_when_compared_with_the_repository_then_none_is_in_a_committed_file(
    made_secrets: Path,
) -> None:
    """Made at random here, so any copy in these files would be a fixed value committed."""
    texts = [
        (ROOT / name).read_text()
        for name in ("Dockerfile", "deploy/tradeflow.env", "deploy/make-secrets.sh")
    ] + [COMPOSE_FILE.read_text()]
    for value in _files(made_secrets).values():
        assert not any(value.strip() in text for text in texts)


def _secret_env(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", SECRET_ENV, *args],
        env={"TRADEFLOW_SECRETS_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


PRINT_ENV = [sys.executable, "-c", "import os; print(repr(os.environ.get('DB')))"]


def test_secret_env_when_the_file_exists_then_the_command_gets_it_without_the_newline(
    made_secrets: Path,
) -> None:
    result = _secret_env(made_secrets, "DB=prefect_database_url", "--", *PRINT_ENV)
    expected = (made_secrets / "prefect_database_url").read_text().removesuffix("\n")
    assert (result.returncode, result.stdout.strip()) == (0, repr(expected))


def test_secret_env_when_the_file_is_missing_then_stops_naming_it_before_the_command(
    made_secrets: Path,
) -> None:
    result = _secret_env(made_secrets, "DB=prefect_database_ur", "--", *PRINT_ENV)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == (
        f"secret-env.sh: secret file {made_secrets}/prefect_database_ur is missing or empty"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("prefect_database_url", "--", "true"), "expected NAME=FILE, got 'prefect_database_url'"),
        (("1DB=prefect_database_url", "--", "true"), "'1DB' is not a variable name"),
        (("DB=prefect_database_url", "--"), "no command after --"),
        (("DB=prefect_database_url",), "no command after --"),
    ],
)
def test_secret_env_when_misused_then_exits_2_saying_how(
    made_secrets: Path, args: tuple[str, ...], message: str
) -> None:
    result = _secret_env(made_secrets, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"secret-env.sh: {message}")
