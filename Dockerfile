# syntax=docker/dockerfile:1
# tradeflow in one image: the API (the default command), and, with another command, the Prefect
# server and worker and the MLflow server (docker-compose.yml), so all four run the versions
# pyproject.toml pins and the tests passed with. Nothing secret is built in: secrets are files
# mounted at /run/secrets when a container runs (deploy/make-secrets.sh, README "Deploying").

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, alone, from PyTorch's CPU index (2.13.0+cpu): PyPI's wheel, or any other
# request for torch, pulls several GB of CUDA libraries (see the Makefile).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
# The dependencies before the code, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt
COPY . .
RUN pip install --no-deps .

FROM python:3.11-slim
# The offline switches infra/settings.py's OFFLINE_ENV sets for tradeflow's own commands, here
# for `prefect server` and `mlflow server` too. HOME and the caches live on the /tmp tmpfs:
# the root filesystem is read-only (docker-compose.yml).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    DO_NOT_TRACK=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=60 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore \
    PREFECT_LOGGING_EXTRA_LOGGERS=tradeflow \
    PREFECT_HOME=/tmp/prefect \
    TRADEFLOW_VAR_DIR=/var/lib/tradeflow
# A user of its own, no login; the data directories are its (named volumes mounted there
# start with this ownership), the code is root's and read-only to it.
RUN groupadd --system --gid 10001 tradeflow \
    && useradd --system --uid 10001 --gid tradeflow --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin tradeflow \
    && install -d -o tradeflow -g tradeflow -m 0750 /var/lib/tradeflow /var/lib/mlflow
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py", "http://127.0.0.1:8000/api/v1/health"]
CMD ["tradeflow", "serve", "--host", "0.0.0.0", "--port", "8000"]
