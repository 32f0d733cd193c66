# Two commands for a fresh clone: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Keep Prefect and MLflow offline and quiet (see shared notes: MLflow only honours "true").
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 60
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
export PREFECT_HOME ?= $(CURDIR)/var/prefect

.PHONY: run test browser lint format ui serve install clean

install: $(STAMP)

# torch==2.13.0 first, alone: any other spec pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/tradeflow run

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Debian's chromium for the dashboard's browser tests (tests/serving/test_dashboard_browser.py):
# Playwright's own browser download is unreachable offline. Without apt-get (or when the install
# fails) it says so, and those tests are skipped with that reason.
browser:
	@command -v chromium >/dev/null || { \
	  if command -v apt-get >/dev/null; then \
	    apt-get install -y -qq chromium >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
	    || echo "make: could not install chromium with apt-get: the browser tests will be skipped"; \
	  else \
	    echo "make: no apt-get here: install chromium yourself, else the browser tests are skipped"; \
	  fi; }

# ruff (its rules include C901: complexity at most 12), then the layer and function-size checks.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests/test_architecture.py tests/core/test_core_is_pure.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Prefect UI on :4200 and MLflow UI on :5000 over what `make run` recorded; Ctrl-C stops both.
ui: $(STAMP)
	@mkdir -p var
	@echo "Prefect UI: http://127.0.0.1:4200   MLflow UI: http://127.0.0.1:5000"
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200 & \
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow.db \
	  --host 127.0.0.1 --port 5000 --workers 1 & \
	wait

serve: $(STAMP)
	$(BIN)/tradeflow serve

clean:
	rm -rf var
