#!/bin/sh
# The Prefect worker container's command: the work pool and prefect.yaml's deployments on the
# server at PREFECT_API_URL (both kept as they are when they exist, so a restart is safe),
# then the worker, with its health check server (PREFECT_WORKER_WEBSERVER_PORT, /health).
set -eu
cd "$(dirname "$0")/.." # prefect.yaml's directory: its pull step runs the flows from here

pool=tradeflow-process # prefect.yaml: definitions.work_pool.name
if ! prefect work-pool inspect "$pool" >/dev/null 2>&1; then
    prefect work-pool create "$pool" --type process
fi
prefect --no-prompt deploy --all
exec prefect worker start --pool "$pool" --with-healthcheck
