"""The pipeline as a Prefect flow against a real Prefect server: a CLI run and a served deployment's runs,
each a DVC experiment and an MLflow run of the same name; states, schema and artifacts read back from
the server's API."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import VENV_BIN, make_project_copy, run, tool_env
from pipeline.layout import STAGES

PROJECT_PARAMS = {"train.epochs": 2, "train.embedding_dim": 16}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project_copy(tmp_path_factory.mktemp("flow-project"), PROJECT_PARAMS)


def api(url: str, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def task_runs(url: str, flow_run_id: str) -> dict[str, str]:
    runs = api(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    return {task["name"]: task["state_type"] for task in runs}


def experiment_names(project: Path) -> set[str]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    return {exp["name"] for entry in shown for exp in (entry.get("experiments") or [])}


def mlflow_runs(project: Path, name: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("word2vec")
    return client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def logs(url: str, flow_run_id: str) -> str:
    records = api(url, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}})
    return "\n".join(record["message"] for record in records)[-3000:]


def wait_for(url: str, flow_run_id: str, deadline: float) -> dict:
    while True:
        (flow_run,) = api(url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        if flow_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        assert time.monotonic() < deadline, f"flow run stuck in {flow_run['state_type']}"
        time.sleep(1)


def test_cli_run_is_a_dvc_experiment_and_an_mlflow_run_of_its_name(project: Path, prefect_server: str) -> None:
    params_before = (project / "params.yaml").read_bytes()
    env = tool_env(PREFECT_API_URL=prefect_server)
    result = run([sys.executable, "-m", "pipeline", "run", "--set", "train.epochs=1", "--name", "cli-run"],
                 project, env)
    assert "| train | ran |" in result.stdout and "dvc exp apply cli-run" in result.stdout
    # The stages ran their shards on the run's one Dask cluster (started by prefect-dask), not their own.
    for stage in ("vectorize", "examples"):
        assert re.search(rf"\[{stage}\] done in .*; \d+ workers? at tcp://127\.0\.0\.1:\d+; made in",
                         result.stdout + result.stderr), stage

    (flow_run,) = api(prefect_server, "/flow_runs/filter", {"flow_runs": {"name": {"any_": ["cli-run"]}}})
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["parameters"]["train"]["epochs"] == 1
    assert flow_run["parameters"]["train"]["embedding_dim"] == 16  # the rest from params.yaml
    assert task_runs(prefect_server, flow_run["id"]) == {stage: "COMPLETED" for stage in STAGES}
    # The workspace is never modified: the experiment ran in DVC's temporary copy.
    assert (project / "params.yaml").read_bytes() == params_before
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert "cli-run" in experiment_names(project)
    (mlflow_run,) = mlflow_runs(project, "cli-run")
    assert mlflow_run.data.tags["prefect.flow_run_id"] == flow_run["id"]
    assert mlflow_run.data.params["train.epochs"] == "1"
    revision = run(["git", "rev-parse", "refs/exps/" + "/".join(
        [mlflow_run.data.tags["dvc.exp_baseline_rev"][:2], mlflow_run.data.tags["dvc.exp_baseline_rev"][2:],
         "cli-run"])], project).stdout.strip()
    assert mlflow_run.data.tags["dvc.exp_rev"] == revision
    # One store for every experiment: the project's, not the temporary copy's.
    assert mlflow_run.info.artifact_uri.startswith((project / "mlartifacts").as_uri())
    artifacts = api(prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["word2vec-summary"]}}})
    summary = next(item["data"] for item in artifacts if item["flow_run_id"] == flow_run["id"])
    assert f"/runs/{mlflow_run.info.run_id}?" in summary and "`train.epochs=1`" in summary
    # The train task's progress bar, at 100% once its epoch ended.
    progress = api(prefect_server, "/artifacts/filter", {"artifacts": {"key": {"any_": ["word2vec-training"]}}})
    (bar,) = [item for item in progress if item["flow_run_id"] == flow_run["id"]]
    assert bar["type"] == "progress" and bar["data"] == 100.0 and bar["task_run_id"]
    # DVC takes the results where the user wants them, e.g. onto a branch.
    run(["dvc", "exp", "branch", "cli-run", "cli-branch"], project)
    assert yaml.safe_load(run(["git", "show", "cli-branch:params.yaml"], project).stdout)["train"]["epochs"] == 1
    scores = json.loads(run(["git", "show", "cli-branch:metrics/evaluate.json"], project).stdout)
    assert mlflow_run.data.metrics["wordsim353_spearman"] == pytest.approx(scores["wordsim353"]["spearman"])


def test_a_second_run_in_the_same_checkout_is_refused(project: Path, prefect_server: str) -> None:
    lock_file = project / ".dvc" / "tmp" / "pipeline-run.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("other-run")
        held.flush()
        result = run([sys.executable, "-m", "pipeline", "run", "--set", "train.epochs=1"], project,
                     tool_env(PREFECT_API_URL=prefect_server), check=False)
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: another pipeline run (other-run) is running in this checkout")


def test_bad_override_fails_before_any_flow_run(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    before = len(api(prefect_server, "/flow_runs/filter", {}))
    result = run([sys.executable, "-m", "pipeline", "run", "--set", "train.epochs=0"], project, env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: param train.epochs=0 is invalid")
    assert len(api(prefect_server, "/flow_runs/filter", {})) == before


def test_a_failing_stage_fails_the_flow_run_with_the_stages_one_line(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    result = run([sys.executable, "-m", "pipeline", "run", "--set", "train.batch_size=100000000", "--name",
                  "too-big-batch"], project, env, check=False)
    assert result.returncode != 0
    (flow_run,) = api(prefect_server, "/flow_runs/filter", {"flow_runs": {"name": {"any_": ["too-big-batch"]}}})
    message = flow_run["state"]["message"]
    assert flow_run["state_type"] == "FAILED"
    assert "fewer than train.batch_size=100000000: lower train.batch_size" in message
    assert "\n" not in message and "Traceback" not in message
    tasks = task_runs(prefect_server, flow_run["id"])
    assert tasks["train"] == "FAILED" and "export" not in tasks
    assert run(["git", "status", "--porcelain"], project).stdout == ""  # the checkout is untouched


def test_served_deployment_has_a_typed_form_and_queues_its_runs(project: Path, prefect_server: str) -> None:
    env = tool_env(PREFECT_API_URL=prefect_server)
    params_before = (project / "params.yaml").read_bytes()
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--name", "test"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (deployments := api(prefect_server, "/deployments/filter",
                                      {"deployments": {"name": {"any_": ["test"]}}})):
            assert server.poll() is None and time.monotonic() < deadline, "deployment never registered"
            time.sleep(1)
        (deployment,) = deployments
        # Every params.yaml key is a typed field with its default; enums are choices.
        schema = deployment["parameter_openapi_schema"]
        params = yaml.safe_load(params_before)
        for section, values in params.items():
            fields = schema["definitions"][schema["properties"][section]["$ref"].split("/")[-1]]["properties"]
            for key in values:
                assert "default" in fields[key] and ("type" in fields[key] or "anyOf" in fields[key]), (section, key)
        train_fields = schema["definitions"]["TrainParams"]["properties"]
        assert train_fields["epochs"]["type"] == "integer" and train_fields["epochs"]["minimum"] == 1
        assert train_fields["optimizer"]["enum"] == ["sgd", "adam"]
        # The form starts from the served checkout's params.yaml.
        assert deployment["parameters"]["train"]["embedding_dim"] == 16

        # Two runs started together: the deployment runs one at a time, never interleaved.
        flow_run_ids = []
        for epochs in (3, 4):  # params no run had yet: DVC trains (its run cache would restore, not train)
            train = {**params["train"], "epochs": epochs}
            result = run([str(VENV_BIN / "prefect"), "deployment", "run", "word2vec-pipeline/test", "--params",
                          json.dumps({"train": train})], project, env)
            flow_run_ids.append(next(line.split()[-1] for line in result.stdout.splitlines() if "UUID" in line))
        flow_runs = [wait_for(prefect_server, flow_run_id, deadline + 400) for flow_run_id in flow_run_ids]
        for flow_run in flow_runs:
            assert flow_run["state_type"] == "COMPLETED", logs(prefect_server, flow_run["id"])
        assert (project / "params.yaml").read_bytes() == params_before
        names = [flow_run["name"] for flow_run in flow_runs]
        assert set(names) <= experiment_names(project)
        for flow_run in flow_runs:
            (mlflow_run,) = mlflow_runs(project, flow_run["name"])
            assert mlflow_run.data.tags["prefect.flow_run_id"] == flow_run["id"]
            assert mlflow_run.data.tags["dvc.exp_name"] == flow_run["name"]
            assert mlflow_run.data.params["train.epochs"] == str(flow_run["parameters"]["train"]["epochs"])
        first, second = sorted(flow_runs, key=lambda flow_run: flow_run["start_time"])
        assert datetime.fromisoformat(first["end_time"]) <= datetime.fromisoformat(second["start_time"])

        # Whoever can start a run in the UI chooses corpus.url: a deployment reads no local file by default.
        result = run([str(VENV_BIN / "prefect"), "deployment", "run", "word2vec-pipeline/test", "--params",
                      json.dumps({"corpus": {"url": "file:///etc/passwd", "sha256": None}})], project, env)
        flow_run_id = next(line.split()[-1] for line in result.stdout.splitlines() if "UUID" in line)
        refused = wait_for(prefect_server, flow_run_id, time.monotonic() + 120)
        assert refused["state_type"] == "FAILED"
        assert "may read only http(s) URLs and files under W2V_SERVE_ALLOWED_DIRS" in refused["state"]["message"]
        assert refused["name"] not in experiment_names(project)
    finally:
        server.terminate()
        server.wait(timeout=30)
