"""MLflow tracking: one run per training, completed by export and evaluate.

The train stage creates the run (params, tags, per-epoch metrics, model, TensorBoard logs) and tags
it with the sha256 of the embedding it saved; the export and evaluate stages find the run by that
hash, so no run id or machine path lives in DVC's outputs. Every stage uses the project's own store,
also from a DVC experiment's temporary copy (`DVC_ROOT`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline import layout
from pipeline.dvc_run import git
from w2vpipe.corpus import file_sha256
from w2vpipe.errors import PipelineError
from w2vpipe.params import yaml_value

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mlflow import MlflowClient

EXPERIMENT_NAME = "word2vec"
# Set by the Prefect flow for the stages it runs through DVC.
PREFECT_FLOW_RUN_ENV = "W2V_PREFECT_FLOW_RUN_ID"
PREFECT_FLOW_RUN_URL_ENV = "W2V_PREFECT_FLOW_RUN_URL"
EMBEDDING_TAG = "w2v.embedding_sha256"
# The runs table's view that `make ui-mlflow` opens: scores and final losses as columns, best first.
SCORES_VIEW = "scores"
VIEW_METRICS = ("wordsim353_spearman", "simlex999_spearman", "analogies_accuracy", "val_loss", "loss")
VIEW_PARAMS = ("train.architecture", "train.embedding_dim", "examples.window_size", "train.epochs")
# MLflow 3.17's UI opens experiments as GenAI unless the URL says otherwise (mlflow/mlflow#24498).
UI_QUERY = "workflowType=machine_learning"


def _experiment_tags() -> dict[str, str]:
    """Mark the experiment as model training and store the scores view (a saved view of MLflow's UI)."""
    columns = [f"metrics.`{name}`" for name in VIEW_METRICS] + [f"params.`{name}`" for name in VIEW_PARAMS]
    state = {"searchFilter": "", "orderByKey": columns[0], "orderByAsc": False, "startTime": "ALL",
             "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
             "selectedColumns": columns, "columnOrder": columns, "columnWidths": dict.fromkeys(columns, 140),
             "runsHiddenMode": "SHOW_ALL"}
    view = {"name": "Scores", "createdAt": 0, "updatedAt": 0, "state": json.dumps(state)}
    return {"mlflow.experimentKind": "custom_model_development",
            f"mlflow.sharedViewState.{SCORES_VIEW}": json.dumps(view)}


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else an embedded SQLite store at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{layout.project_root() / 'mlflow.db'}"


def check_store(timeout_seconds: float = 5.0) -> None:
    """Fail in seconds, with one line, when the tracking server does not answer (MLflow's own client
    retries for minutes); an embedded SQLite store needs no check."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_seconds):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise PipelineError(f"the MLflow tracking server {uri} does not answer ({reason}): start it, or unset "
                            "MLFLOW_TRACKING_URI to track into the project's mlflow.db") from None


def mlflow_client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def experiment_id(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is not None:
        for key, value in _experiment_tags().items():  # a store made by an earlier version gets them too
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    artifact_root = None
    if tracking_uri().startswith("sqlite:"):
        # Keep artifacts beside the store, not under whatever directory a stage ran in.
        artifact_root = (layout.project_root() / "mlartifacts").as_uri()
    return client.create_experiment(EXPERIMENT_NAME, artifact_location=artifact_root, tags=_experiment_tags())


def _pipeline_outputs(dvc_file: Path = Path("dvc.yaml")) -> list[str]:
    """What `dvc repro` itself writes into git-tracked files: dvc.lock and the uncached outputs."""
    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}) if dvc_file.is_file() else {}
    paths = ["dvc.lock"]
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def git_commit() -> str | None:
    """The commit the run started from, with "-dirty" when tracked source or params differ from it.

    The files the pipeline writes (dvc.lock, metrics) don't count: a `dvc repro` in progress has
    changed them. In a DVC experiment neither does params.yaml: its `-S` values are the run's params.
    """
    try:
        commit = os.environ.get("DVC_EXP_BASELINE_REV") or git("rev-parse", "HEAD")
        changed = git("diff", "--name-only", "HEAD").split()
    except PipelineError:  # not a git checkout
        return None
    ignored = _pipeline_outputs() + (["params.yaml"] if os.environ.get("DVC_EXP_NAME") else [])
    source_changes = [path for path in changed
                      if not any(path == out or path.startswith(out.rstrip("/") + "/") for out in ignored)]
    return commit + ("-dirty" if source_changes else "")


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


def run_tags() -> dict[str, str]:
    """Lineage: code commit, data hashes, and the Prefect flow run and DVC experiment, when they apply."""
    tags = dvc_hashes()
    commit = git_commit()
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    for env, tag in ((PREFECT_FLOW_RUN_ENV, "prefect.flow_run_id"), (PREFECT_FLOW_RUN_URL_ENV, "prefect.flow_run_url"),
                     ("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


HOST_TAG, PID_TAG = "w2v.host", "w2v.pid"


def mark_dead_runs(client: MlflowClient, experiment: str) -> list[str]:
    """Runs left RUNNING by a training killed on this host (its process is gone): marked KILLED."""
    host = socket.gethostname()
    runs = client.search_runs([experiment], filter_string=f"attributes.status = 'RUNNING' and "
                                                          f"tags.`{HOST_TAG}` = '{host}'")
    dead = []
    for run in runs:
        try:
            os.kill(int(run.data.tags[PID_TAG]), 0)
        except ProcessLookupError:
            client.set_terminated(run.info.run_id, "KILLED")
            dead.append(run.info.run_id)
        except (KeyError, ValueError, PermissionError):  # no pid, or a live process of another user
            continue
    return dead


def _start_run(client: MlflowClient, flat_params: dict[str, Any], extra_tags: dict[str, str]) -> str:
    from mlflow.entities import Param

    experiment = experiment_id(client)
    for run_id in mark_dead_runs(client, experiment):
        print(f"MLflow run {run_id} was left RUNNING by a killed training: marked KILLED", flush=True)
    # Named after the DVC experiment (and so the Prefect flow run that started it); else MLflow names it.
    run = client.create_run(experiment, tags={**run_tags(), **extra_tags}, run_name=os.environ.get("DVC_EXP_NAME"))
    client.log_batch(run.info.run_id, params=[Param(key, yaml_value(value)) for key, value in flat_params.items()])
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

    Requests that expect an answer ("ready", "end") get the run id, or the
    first error met so far; the others are fire-and-forget.
    """
    from mlflow.entities import Metric

    error: str | None = None
    client = run_id = None
    try:
        client = mlflow_client()
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
                elif request == "set_tags":
                    for key, value in args[0].items():
                        client.set_tag(run_id, key, value)
                elif request == "end":
                    client.set_terminated(run_id, args[0])
            except Exception as failure:
                error = _one_line(failure)
        if request in ("ready", "end"):
            connection.send((error, run_id))
        if request == "end":
            return


class TrainTracking:
    """The MLflow run of one training, logged by a child process.

    Importing MLflow and opening its store takes 1.5 to 2 s. The child does it on the second core
    while the stage imports TensorFlow, so tracking adds almost nothing to the stage's time.
    Per-epoch metrics and artifacts are queued to the child in order; any tracking failure is
    raised at the next `wait_ready` or at the end.
    """

    def __init__(self, flat_params: dict[str, Any], tags: dict[str, str]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold TF threads
        self._connection, child_end = context.Pipe()
        os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # the child resolves the same store
        # The stage's own process: while it lives, its run is not dead (see `mark_dead_runs`).
        tags = {**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
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

    def tag_embedding(self, embedding_file: Path) -> None:
        """Tag the run with the saved embedding's hash (how the export and evaluate stages find it), and wait
        until everything queued is logged: the files are still in a temporary folder."""
        self._connection.send(("set_tags", {EMBEDDING_TAG: file_sha256(embedding_file)}))
        self._ask("ready")

    def __enter__(self) -> TrainTracking:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        try:
            stopped = error_type is not None and issubclass(error_type, (KeyboardInterrupt, SystemExit))
            self._ask("end", "FINISHED" if error_type is None else "KILLED" if stopped else "FAILED")
        except PipelineError:
            if error_type is None:
                raise
        finally:
            self._process.join(timeout=60)


def _newest_run_tagged(tag: str, value: str) -> tuple[MlflowClient, str] | None:
    """The client and id of the newest run of the experiment with `tag` = `value`, or None."""
    client = mlflow_client()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{tag}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return (client, runs[0].info.run_id) if runs else None


def training_run(embedding_file: Path) -> tuple[MlflowClient, str] | None:
    """The client and id of the newest run that trained `embedding_file`, or None if there is none."""
    if not embedding_file.is_file():
        return None
    return _newest_run_tagged(EMBEDDING_TAG, file_sha256(embedding_file))


def log_export(embedding_file: Path, export_dir: Path) -> str | None:
    """Add the exported files to the training's run; returns the run id, or None if it is gone."""
    found = training_run(embedding_file)
    if found is None:
        return None
    client, run_id = found
    client.log_artifacts(run_id, str(export_dir), "embeddings")
    return run_id


def log_evaluation(embedding_file: Path, metrics_file: Path, neighbours_file: Path) -> str | None:
    """Add the evaluate stage's files to the training's run; returns the run id, or None if it is gone."""
    found = training_run(embedding_file)
    if found is None:
        return None
    _log_evaluation_files(*found, metrics_file, neighbours_file)
    return found[1]


def _log_evaluation_files(client: MlflowClient, run_id: str, metrics_file: Path, neighbours_file: Path) -> None:
    """The scores as metrics (so the runs table sorts by them), the neighbours as an MLflow table, and
    both files as artifacts."""
    from mlflow.entities import Metric

    from w2vpipe.evaluation import flat_metrics

    now = int(time.time() * 1000)
    scores = flat_metrics(json.loads(metrics_file.read_text(encoding="utf-8")))
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in scores.items()])
    neighbours = json.loads(neighbours_file.read_text(encoding="utf-8"))["neighbours"]
    rows = [(probe, rank, neighbour["word"], neighbour["cosine"]) for probe, nearest in neighbours.items()
            for rank, neighbour in enumerate(nearest, start=1)]
    client.log_table(run_id, {"probe": [row[0] for row in rows], "rank": [row[1] for row in rows],
                              "neighbour": [row[2] for row in rows], "cosine": [row[3] for row in rows]},
                     artifact_file="evaluation/neighbours.json")
    for path in (metrics_file, neighbours_file):
        client.log_artifact(run_id, str(path), "evaluation")


def complete_run(client: MlflowClient, run_id: str, exports: Callable[[], Path | None],
                 scores: Callable[[], tuple[Path, Path] | None]) -> list[str]:
    """Give a training's run the exports and scores it lacks; returns what was added.

    A training that reproduces its embedding bit for bit (a fresh clone, `dvc repro --force`, a change
    to code that does not change the numbers) gets a new run, but DVC skips export and evaluate: their
    inputs are unchanged, and so are their outputs, which this copies into the new run. `exports` and
    `scores` give the export folder and the evaluate stage's two files, called only when needed.
    """
    added = []
    if not client.list_artifacts(run_id, "embeddings") and (export_dir := exports()) is not None:
        client.log_artifacts(run_id, str(export_dir), "embeddings")
        added.append("exports")
    if not client.list_artifacts(run_id, "evaluation") and (files := scores()) is not None:
        _log_evaluation_files(client, run_id, *files)
        added.append("scores")
    return added


def ui_url() -> str:
    """Where the MLflow UI shows this store: the tracking server itself, or `make ui-mlflow`'s address."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get("W2V_MLFLOW_UI_URL", "http://127.0.0.1:5000")


def run_link(client: MlflowClient, run_id: str) -> str:
    """A markdown link to the run's page in the MLflow UI."""
    run = client.get_run(run_id)
    return f"[{run.info.run_name}]({ui_url()}/#/experiments/{run.info.experiment_id}/runs/{run_id}?{UI_QUERY})"


def runs_view_url(client: MlflowClient) -> str:
    """The experiment's runs table, scores as columns."""
    return f"{ui_url()}/#/experiments/{experiment_id(client)}/runs?{UI_QUERY}&viewStateShareKey={SCORES_VIEW}"


def flow_run_training(flow_run_id: str, tags: dict[str, str]) -> tuple[MlflowClient, str] | None:
    """The run a Prefect flow run's experiment trained, if it trained (else None), tagged with `tags`."""
    found = _newest_run_tagged("prefect.flow_run_id", flow_run_id)
    if found is not None:
        for key, value in tags.items():
            found[0].set_tag(found[1], key, value)
    return found
