"""MLflow tracking: one run per pipeline execution, opened by train, completed by export and evaluate.

The train stage creates the run (params, tags, per-epoch metrics, model, TensorBoard logs) and
leaves its id in `models/mlflow_run.json`; the export stage adds the exported files to it, the
evaluate stage the scores and the probe words' neighbours.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline import layout
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mlflow import MlflowClient

EXPERIMENT_NAME = "word2vec"
PREFECT_FLOW_RUN_ENV = "W2V_PREFECT_FLOW_RUN_ID"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else an embedded SQLite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def _experiment_id(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root = None
    if tracking_uri().startswith("sqlite:"):
        # Keep artifacts beside the store, not under whatever directory a stage ran in.
        artifact_root = (Path.cwd() / "mlartifacts").as_uri()
    return client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root)


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.strip() + ("-dirty" if dirty.strip() else "")


def dvc_hashes(lock_file: Path = Path("dvc.lock")) -> dict[str, str]:
    """The DVC hashes of the corpus and the examples, as `dvc.lock` records them."""
    if not lock_file.is_file():
        return {}
    stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {})
    wanted = {"download": layout.CORPUS_DIR, "examples": layout.EXAMPLES_DIR}
    hashes = {}
    for stage, path in wanted.items():
        for out in stages.get(stage, {}).get("outs", []):
            if Path(out.get("path", "")) == path and "md5" in out:
                hashes[f"dvc.{stage}.md5"] = out["md5"]
    return hashes


def _start_run(client: MlflowClient, flat_params: dict[str, Any], extra_tags: dict[str, str]) -> str:
    from mlflow.entities import Param

    tags = {**dvc_hashes(), **extra_tags}
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    for env, tag in ((PREFECT_FLOW_RUN_ENV, "prefect.flow_run_id"), ("DVC_EXP_NAME", "dvc.exp_name")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    run = client.create_run(_experiment_id(client), tags=tags, run_name=os.environ.get("DVC_EXP_NAME"))
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in flat_params.items()])
    return run.info.run_id


def _log_artifact(client: MlflowClient, run_id: str, path: str, artifact_path: str) -> None:
    if Path(path).is_dir():
        client.log_artifacts(run_id, path, artifact_path)
    else:
        client.log_artifact(run_id, path, artifact_path)


def _one_line(failure: Exception) -> str:
    first = (str(failure).strip().splitlines() or [""])[0]
    return f"{type(failure).__name__}: {first[:300]}"


def _train_tracking_worker(connection: Connection, flat_params: dict[str, Any], tags: dict[str, str]) -> None:
    """The child process's loop: MLflow calls in the order the stage sent them.

    Requests that expect an answer ("ready", "save_reference", "end") get the run id, or the
    first error met so far; the others are fire-and-forget.
    """
    from mlflow.entities import Metric

    error: str | None = None
    client = run_id = None
    try:
        client = _client()
        run_id = _start_run(client, flat_params, tags)
    except Exception as failure:  # reported to the stage at its next request that expects an answer
        error = _one_line(failure)
    while True:
        request, *args = connection.recv()
        if error is None and client is not None and run_id is not None:
            try:
                if request == "log_epoch":
                    epoch, metrics = args
                    now = int(time.time() * 1000)
                    client.log_batch(run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])
                elif request == "log_artifact":
                    _log_artifact(client, run_id, *args)
                elif request == "save_reference":
                    with atomic_file(Path(args[0])) as tmp:
                        tmp.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri()}, indent=2) + "\n")
                elif request == "end":
                    client.set_terminated(run_id, args[0])
            except Exception as failure:
                error = _one_line(failure)
        if request in ("ready", "save_reference", "end"):
            connection.send((error, run_id))
        if request == "end":
            return


class TrainTracking:
    """The MLflow run of one training, logged by a child process.

    Importing MLflow and opening its store takes 1.5 to 2 s. The child does it on the second core
    while the stage imports TensorFlow, so tracking adds almost nothing to the stage's time.
    Per-epoch metrics and artifacts are queued to the child in order; any tracking failure is
    raised at the next `wait_ready`, `save_reference` or at the end.
    """

    def __init__(self, flat_params: dict[str, Any], tags: dict[str, str]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold TF threads
        self._connection, child_end = context.Pipe()
        os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # the child resolves the same store
        self._process = context.Process(target=_train_tracking_worker, args=(child_end, flat_params, tags),
                                        name="mlflow-tracking", daemon=True)
        self._process.start()
        child_end.close()
        self.run_id: str | None = None

    def _ask(self, *request: Any) -> str:
        self._connection.send(request)
        try:
            error, run_id = self._connection.recv()
        except EOFError:
            raise PipelineError("the MLflow tracking process died: see the messages above") from None
        if error:
            raise PipelineError(f"MLflow tracking failed ({error}): check MLFLOW_TRACKING_URI={tracking_uri()}")
        self.run_id = run_id
        return run_id

    def wait_ready(self) -> str:
        """Block until the run exists; call before the expensive work."""
        return self._ask("ready")

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._connection.send(("log_epoch", epoch, metrics))

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        self._connection.send(("log_artifact", str(path), artifact_path))

    def save_reference(self, run_file: Path) -> None:
        """Leave the run's id where the export stage finds it (after everything queued is logged)."""
        self._ask("save_reference", str(run_file))

    def __enter__(self) -> TrainTracking:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        try:
            self._ask("end", "FINISHED" if error_type is None else "FAILED")
        except PipelineError:
            if error_type is None:
                raise
        finally:
            self._process.join(timeout=60)


def _training_run(run_file: Path) -> tuple[MlflowClient, str] | None:
    """The client and id of the run the train stage left in `run_file`, or None if it is gone."""
    if not run_file.is_file():
        return None
    run_id = json.loads(run_file.read_text())["run_id"]
    client = _client()
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    return client, run_id


def log_export(run_file: Path, export_dir: Path) -> str | None:
    """Add the exported files to the training's run; returns the run id, or None if it is gone."""
    found = _training_run(run_file)
    if found is None:
        return None
    client, run_id = found
    client.log_artifacts(run_id, str(export_dir), "embeddings")
    return run_id


def log_evaluation(run_file: Path, metrics: dict[str, float], neighbours: dict[str, list[Any]],
                   files: list[Path]) -> str | None:
    """Add the scores (as metrics, so the runs table sorts by them), the neighbours (as an MLflow
    table) and the metrics files to the training's run; returns the run id, or None if it is gone."""
    found = _training_run(run_file)
    if found is None:
        return None
    client, run_id = found
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in metrics.items()])
    rows = [(probe, rank, neighbour.word, neighbour.cosine) for probe, nearest in neighbours.items()
            for rank, neighbour in enumerate(nearest, start=1)]
    client.log_table(run_id, {"probe": [row[0] for row in rows], "rank": [row[1] for row in rows],
                              "neighbour": [row[2] for row in rows], "cosine": [row[3] for row in rows]},
                     artifact_file="evaluation/neighbours.json")
    for path in files:
        client.log_artifact(run_id, str(path), "evaluation")
    return run_id
