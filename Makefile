# One command to set up and run the pipeline, one to set up and run the tests.
#   make run     # venv from requirements.lock, then `dvc repro` (Shakespeare, params.yaml) and a summary
#   make test    # venv from requirements.lock, then pytest
# Offline: W2V_CORPUS_MIRROR=/path/to/folder/with/shakespeare.txt make run

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run test ui-mlflow ui-prefect

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: setup
	$(BIN)/python -m pipeline repro

test: setup
	DO_NOT_TRACK=true $(BIN)/python -m pytest $(PYTEST_ARGS)

# One worker and no background job runner: 0.5 GiB instead of 3.3 (MLflow 3.17, 2 cores).
ui-mlflow: setup
	@$(BIN)/python -c "from pipeline import tracking; print('runs, scores as columns:', tracking.runs_view_url(tracking.mlflow_client()))"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

ui-prefect: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false prefect server start --host 127.0.0.1 --port 4200
