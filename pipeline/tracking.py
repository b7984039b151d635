"""MLflow tracking: one run per pipeline execution, opened by train and completed by export.

The train stage creates the run (params, tags, per-epoch metrics, model, TensorBoard logs) and
leaves its id in `models/mlflow_run.json`; the export stage adds the exported files to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline import layout
from w2vpipe.files import atomic_file

if TYPE_CHECKING:
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


@dataclass
class TrainRun:
    """An open MLflow run for one training; `log_epoch` is called once per epoch."""

    client: MlflowClient
    run_id: str

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(key, value, now, epoch) for key, value in metrics.items()]
        )

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def save_reference(self, run_file: Path) -> None:
        """Leave the run's id where the export stage finds it."""
        with atomic_file(run_file) as tmp:
            tmp.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": tracking_uri()}, indent=2) + "\n")

    def __enter__(self) -> TrainRun:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if error_type is None else "FAILED")


def start_train_run(flat_params: dict[str, Any], extra_tags: dict[str, str]) -> TrainRun:
    client = _client()
    tags = {**dvc_hashes(), **extra_tags}
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    for env, tag in ((PREFECT_FLOW_RUN_ENV, "prefect.flow_run_id"), ("DVC_EXP_NAME", "dvc.exp_name")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    run = client.create_run(_experiment_id(client), tags=tags, run_name=os.environ.get("DVC_EXP_NAME"))
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in flat_params.items()])
    return TrainRun(client=client, run_id=run.info.run_id)


def log_export(run_file: Path, export_dir: Path) -> str | None:
    """Add the exported files to the training's run; returns the run id, or None if it is gone."""
    if not run_file.is_file():
        return None
    run_id = json.loads(run_file.read_text())["run_id"]
    client = _client()
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    client.log_artifacts(run_id, str(export_dir), "embeddings")
    return run_id
