"""Log set-up for a flow run a Prefect worker started from a deployment: no tradeflow CLI ran in
that process, so nothing set up the JSON lines, the correlation ids or the secrets' redaction.
A flow run started any other way (the CLI, a test) keeps the process's own set-up."""

from __future__ import annotations

from prefect.runtime import deployment

from services import bootstrap


def set_up_logs() -> None:
    if deployment.id is not None:
        bootstrap.configure_logging(bootstrap.get_settings())
