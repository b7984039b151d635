"""The pipeline as a Prefect flow against a real Prefect server: a CLI run and a served deployment,
their states read back from the server's API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import VENV_BIN, make_project_copy, run, tool_env
from pipeline.layout import STAGES

OVERRIDES = {"train.epochs": 1, "train.embedding_dim": 16}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project_copy(tmp_path_factory.mktemp("flow-project"))


def api(url: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def task_runs(url: str, flow_run_id: str) -> dict[str, str]:
    runs = api(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return {task["name"]: task["state_type"] for task in runs}


def test_cli_flow_run_is_recorded_by_the_server(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    sets = [arg for key, value in OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    result = run([sys.executable, "-m", "pipeline", "run", *sets], project, env)
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["stages"] == {stage: "ran" for stage in STAGES}

    (flow_run,) = api(prefect_server, "/flow_runs/filter", {})
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["parameters"]["overrides"] == OVERRIDES
    assert task_runs(prefect_server, flow_run["id"]) == {
        stage: "COMPLETED" for stage in STAGES}
    artifacts = api(prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["word2vec-summary"]}}})
    assert artifacts and "| train | ran |" in artifacts[0]["data"]
    # The overrides stay in params.yaml (comments kept), like `dvc exp run -S`.
    params_text = (project / "params.yaml").read_text()
    assert "epochs: 1" in params_text and "# Every knob of the pipeline" in params_text
    # The MLflow run knows which flow run made it.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("word2vec").experiment_id])
    assert mlflow_run.data.tags["prefect.flow_run_id"] == flow_run["id"]


def test_bad_override_fails_the_flow_before_any_stage(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    result = run([sys.executable, "-m", "pipeline", "run", "--set", "train.epochs=0"], project, env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: param train.epochs=0 is invalid")
    assert "epochs: 1" in (project / "params.yaml").read_text()  # untouched


def test_served_deployment_runs_with_parameters(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--name", "test"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not api(prefect_server, "/deployments/filter", {}):
            assert server.poll() is None and time.monotonic() < deadline, "deployment never registered"
            time.sleep(1)
        result = run([str(VENV_BIN / "prefect"), "deployment", "run", "word2vec-pipeline/test", "--params",
                      json.dumps({"overrides": OVERRIDES})], project, env)
        flow_run_id = next(line.split()[-1] for line in result.stdout.splitlines() if "UUID" in line)
        while True:
            (flow_run,) = api(prefect_server, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
            if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert time.monotonic() < deadline + 240, f"flow run stuck in {flow_run['state_type']}"
            time.sleep(1)
        assert flow_run["state_type"] == "COMPLETED"
        assert flow_run["parameters"] == {"overrides": OVERRIDES}
        # Same params as the CLI run: every stage is already up to date in DVC.
        assert set(task_runs(prefect_server, flow_run_id).values()) == {"COMPLETED"}
    finally:
        server.terminate()
        server.wait(timeout=30)
