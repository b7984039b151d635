"""MLflow tracking: one run per training, completed by export and evaluate.

The train stage creates the run (params, tags, per-epoch metrics, model, TensorBoard logs) and tags
it with the sha256 of the embedding it saved; the export and evaluate stages find the run by that
hash, so no run id or machine path lives in DVC's outputs. Every stage uses the project's own store,
also from a DVC experiment's temporary copy (`DVC_ROOT`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline import layout
from pipeline.dvc_run import git
from w2vpipe.corpus import file_sha256
from w2vpipe.errors import PipelineError
from w2vpipe.params import yaml_value
from w2vpipe.vectors import KEYED_VECTORS_FILE, WORD2VEC_BINARY_FILE, WORD2VEC_TEXT_FILE

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mlflow import MlflowClient

EXPERIMENT_NAME = "word2vec"
# Set by the Prefect flow for the stages it runs through DVC.
PREFECT_FLOW_RUN_ENV = "W2V_PREFECT_FLOW_RUN_ID"
PREFECT_FLOW_RUN_URL_ENV = "W2V_PREFECT_FLOW_RUN_URL"
EMBEDDING_TAG = "w2v.embedding_sha256"
# Which run trained each embedding (a file named by its sha256, holding the run id): how export and evaluate
# queue their tracking for the right run while the store is down.
RUN_RECORDS_DIR = layout.STATE_DIR / "runs"
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


def prepare_store() -> None:
    """Before a stage tracks anything: fail fast when the store is down, then send what earlier
    trainings kept in their outboxes while it was."""
    check_store()
    for line in send_outboxes():
        print(line, flush=True)


def mlflow_client() -> MlflowClient:
    from mlflow import MlflowClient

    # A fresh store's first use logs its schema set-up at INFO ("Creating initial MLflow database tables...").
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
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
    dead = [run.info.run_id for run in runs if process_gone(run.data.tags.get(PID_TAG))]
    for run_id in dead:
        client.set_terminated(run_id, "KILLED")
    return dead


def process_gone(pid: object) -> bool:
    """Whether process `pid` of this host has ended (False when unknown, or another user's)."""
    try:
        os.kill(int(str(pid)), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def _start_run(client: MlflowClient, flat_params: dict[str, Any], tags: dict[str, str],
               resume_run_id: str | None) -> str:
    """A new run, or `resume_run_id` reopened (a training resumed from its checkpoint)."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    experiment = experiment_id(client)
    run_id = None
    if resume_run_id:
        try:
            client.update_run(resume_run_id, status="RUNNING")
            run_id = resume_run_id
        except MlflowException:  # deleted meanwhile: the resumed training gets a new run
            pass
    if run_id is not None:
        for key, value in tags.items():  # this process's pid, so the run is not taken for dead
            client.set_tag(run_id, key, value)
    for dead in mark_dead_runs(client, experiment):
        print(f"MLflow run {dead} was left RUNNING by a killed training: marked KILLED", flush=True)
    if run_id is None:
        # Named after the DVC experiment (and so the Prefect flow run that started it); else MLflow names it.
        run = client.create_run(experiment, tags={**run_tags(), **tags}, run_name=os.environ.get("DVC_EXP_NAME"))
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(key, yaml_value(value)) for key, value in flat_params.items()])
    return run_id


def _perform(client: MlflowClient, run_id: str, request: list[Any]) -> None:
    """One tracking request, live or replayed from an outbox."""
    from mlflow.entities import Metric

    kind, *args = request
    if kind == "log_epoch":
        epoch, metrics, timestamp = args
        client.log_batch(run_id, metrics=[Metric(k, v, timestamp, epoch) for k, v in metrics.items()])
    elif kind == "log_artifact":
        path, artifact_path = args
        if Path(path).is_dir():
            client.log_artifacts(run_id, path, artifact_path)
        else:
            client.log_artifact(run_id, path, artifact_path)
    elif kind == "set_tags":
        for key, value in args[0].items():
            client.set_tag(run_id, key, value)
    elif kind == "end":
        client.set_terminated(run_id, args[0])
    elif kind == "log_export":
        exports = Path(args[0])
        for path in sorted(exports.iterdir()):
            if path.name not in EXPORTS_NOT_LOGGED:
                client.log_artifact(run_id, str(path), "embeddings")
        log_embeddings_model(run_id, exports / KEYED_VECTORS_FILE)
    elif kind == "log_evaluation":
        _log_evaluation_files(client, run_id, Path(args[0]), Path(args[1]))


# The word2vec files are the vectors of word2vec.kv in other formats, which DVC keeps with the rest of exports/:
# neither the run nor an outbox copies them (at a million words of dimension 300 they were 2 GB of each run's
# artifacts, copied in seconds of the export stage). The served model holds word2vec.kv (pyfunc/artifacts/).
OTHER_FORMATS = (WORD2VEC_BINARY_FILE, WORD2VEC_TEXT_FILE)
EXPORTS_NOT_LOGGED = (KEYED_VECTORS_FILE, *OTHER_FORMATS)

# How many of a request's first arguments are files, which an outbox keeps copies of (their folders may change).
FILE_ARGUMENTS = {"log_artifact": 1, "log_export": 1, "log_evaluation": 2}


def _one_line(failure: BaseException) -> str:
    first = (str(failure).strip().splitlines() or [""])[0]
    return f"{type(failure).__name__}: {first[:300]}"


class Outbox:
    """Tracking requests a run's store could not take, kept in order on disk (artifacts copied, as
    their folders may change) until they are sent: `python -m pipeline sync`, or the next stage that
    tracks (`send_outboxes`)."""

    def __init__(self, run_id: str) -> None:
        self.directory = layout.project_root() / layout.OUTBOX_DIR / run_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self._requests = self.directory / "requests.jsonl"
        self._sent = self.directory / "sent"

    def add(self, request: list[Any]) -> None:
        paths = FILE_ARGUMENTS.get(request[0], 0)
        copies = []
        for number, source in enumerate(map(Path, request[1:1 + paths])):
            copy = self.directory / "files" / f"{len(self.requests())}-{number}" / source.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():  # exports/: what the run will hold and the served model's file
                shutil.copytree(source, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*OTHER_FORMATS))
            else:
                shutil.copy2(source, copy)
            copies.append(str(copy))
        request = [request[0], *copies, *request[1 + paths:]]
        with self._requests.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(request) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def requests(self) -> list[list[Any]]:
        if not self._requests.is_file():
            return []
        return [json.loads(line) for line in self._requests.read_text(encoding="utf-8").splitlines() if line]

    def send(self, client: MlflowClient) -> int:
        """Deliver the requests in order, counting each one the store took (a send cut short resumes
        there); the outbox is removed when all are in. Returns how many were sent."""
        run_id = self.directory.name
        requests = self.requests()
        sent = int(self._sent.read_text()) if self._sent.is_file() else 0
        # An epoch is logged once, whichever process got it to the store first.
        logged_epochs = {metric.step for metric in client.get_metric_history(run_id, "loss")}
        for index, request in enumerate(requests[sent:], start=sent):
            if not (request[0] == "log_epoch" and request[1] in logged_epochs):
                _perform(client, run_id, request)
                if request[0] == "log_epoch":
                    logged_epochs.add(request[1])
            self._sent.write_text(str(index + 1))
        if any(request[0] in ("log_export", "log_evaluation") for request in requests):
            update_champion(client, run_id)
        shutil.rmtree(self.directory)
        return len(requests) - sent


def send_outboxes(client: MlflowClient | None = None) -> list[str]:
    """Send what earlier trainings could not (their store was down); returns one line per run.
    Raises when the store still fails."""
    root = layout.project_root() / layout.OUTBOX_DIR
    outboxes = [Outbox(path.name) for path in sorted(root.iterdir())] if root.is_dir() else []
    if not outboxes:
        return []
    client = client or mlflow_client()
    return [f"MLflow run {outbox.directory.name}: {outbox.send(client)} tracking requests sent from its outbox"
            for outbox in outboxes]


# Fail over to the outbox within seconds, not after MLflow's default of minutes of retries.
TRACKING_CHILD_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def _train_tracking_worker(connection: Connection, flat_params: dict[str, Any], tags: dict[str, str],
                           resume_run_id: str | None) -> None:
    """The child process's loop: MLflow calls in the order the stage sent them.

    Requests that expect an answer ("ready", "end") get (error, run id, outbox folder or None). An
    error before the run exists fails the stage; once it exists, a failed call sends it and every
    later request to the run's outbox instead, which is tried again at the end.
    """
    for key, value in TRACKING_CHILD_ENV.items():
        os.environ.setdefault(key, value)
    error: str | None = None
    client = run_id = None
    outbox: Outbox | None = None
    logged_epochs: set[int] = set()
    try:
        client = mlflow_client()
        for line in send_outboxes(client):
            print(line, flush=True)
        run_id = _start_run(client, flat_params, tags, resume_run_id)
        logged_epochs = {metric.step for metric in client.get_metric_history(run_id, "loss")}
    except Exception as failure:  # reported to the stage at its next request that expects an answer
        error = _one_line(failure)
    while True:
        try:
            request = list(connection.recv())
        except EOFError:  # the stage died: its checkpoint keeps the run for the next try
            return
        kind = request[0]
        # An epoch is logged once: the stage sends them all again at the end, and after a resume.
        live = error is None and kind != "ready" and not (kind == "log_epoch" and request[1] in logged_epochs)
        if live and client is not None and run_id is not None:
            if outbox is None:
                try:
                    _perform(client, run_id, request)
                    if kind == "log_epoch":
                        logged_epochs.add(request[1])
                except Exception as failure:
                    outbox = Outbox(run_id)
                    print(f"WARNING: the MLflow store failed ({_one_line(failure)}): training goes on; what "
                          f"cannot be tracked is kept in {outbox.directory}", flush=True)
            if outbox is not None:
                outbox.add(request)
                if kind == "end":
                    try:
                        outbox.send(client)  # the store may be back
                        outbox = None
                    except Exception:
                        pass
        if kind in ("ready", "end"):
            connection.send((error, run_id, str(outbox.directory) if outbox else None))
        if kind == "end":
            return


class TrainTracking:
    """The MLflow run of one training, logged by a child process.

    Importing MLflow and opening its store takes 2 to 3 s of CPU. The child does it while the stage starts
    training, which waits for the run only before its first checkpoint.
    Per-epoch metrics and artifacts are queued to the child in order. A store that fails once the
    run exists (or a child that dies) does not stop the training: the rest is kept in the run's
    `Outbox`, with a loud warning. `resume_run_id` continues the run of a killed training.
    """

    def __init__(self, flat_params: dict[str, Any], tags: dict[str, str], resume_run_id: str | None = None) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold TF threads
        self._connection, child_end = context.Pipe()
        os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())  # the child resolves the same store
        # The stage's own process: while it lives, its run is not dead (see `mark_dead_runs`).
        tags = {**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
        self._process = context.Process(target=_train_tracking_worker,
                                        args=(child_end, flat_params, tags, resume_run_id),
                                        name="mlflow-tracking", daemon=True)
        self._process.start()
        child_end.close()
        self.run_id: str | None = None
        self.outbox: str | None = None  # where requests wait for the store, once it failed
        self._own_outbox: Outbox | None = None  # this process's, once the child died

    def _send(self, *request: Any) -> None:
        if self._own_outbox is None:
            try:
                self._connection.send(request)
                return
            except OSError:
                self._lost_child()
        assert self._own_outbox is not None
        self._own_outbox.add(list(request))

    def _lost_child(self) -> None:
        if self.run_id is None:
            raise PipelineError("the MLflow tracking process died before the run began: see the messages above")
        self._own_outbox = Outbox(self.run_id)
        self.outbox = str(self._own_outbox.directory)
        print(f"WARNING: the MLflow tracking process died: training goes on; what cannot be tracked is kept "
              f"in {self.outbox}", flush=True)

    def _ask(self, *request: Any) -> str | None:
        self._send(*request)
        if self._own_outbox is None:
            try:
                error, run_id, outbox = self._connection.recv()
            except (EOFError, OSError):
                self._lost_child()
                if request[0] == "end":
                    self._own_outbox.add(list(request))  # type: ignore[union-attr]
                return self.run_id
            if error:
                raise PipelineError(f"MLflow tracking failed ({error}): check MLFLOW_TRACKING_URI={tracking_uri()}")
            self.run_id, self.outbox = run_id, outbox
        return self.run_id

    def wait_ready(self) -> str | None:
        """Block until the run exists (or its creation failed, raised here)."""
        return self._ask("ready")

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._send("log_epoch", epoch, metrics, int(time.time() * 1000))

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        self._send("log_artifact", str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._send("set_tags", tags)

    def tag_embedding(self, embedding_file: Path) -> None:
        """Tag the run with the saved embedding's hash (how the export and evaluate stages find it), and wait
        until everything queued is logged or kept: the files are still in a temporary folder."""
        embedding_sha256 = file_sha256(embedding_file)
        self.set_tags({EMBEDDING_TAG: embedding_sha256})
        if self._ask("ready"):
            remember_run(embedding_sha256, str(self.run_id))

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
        if self.outbox:
            print(f"WARNING: MLflow run {self.run_id} is incomplete in the store: the rest of its tracking is kept "
                  f"in {self.outbox}; send it with `python -m pipeline sync` once {tracking_uri()} answers "
                  "(the next training, export or evaluate stage sends it too)", flush=True)


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


# The registered model every training adds a version to, and the alias its best version carries.
MODEL_NAME = "word2vec"
CHAMPION_ALIAS = "champion"
CHAMPION_METRIC = "wordsim353_spearman"
SERVING_MODEL_FILE = Path(__file__).with_name("serving_model.py")
# MLflow 3 resolves `runs:/RUN/NAME` to the run's logged model of that name: a model named `embeddings`
# hid the exports' folder of that name.
PYFUNC_ARTIFACT = "pyfunc"


def log_embeddings_model(run_id: str, keyed_vectors_file: Path) -> str:
    """Log the embeddings into the run as an MLflow pyfunc model (`serving_model.py`: a list of words
    in, each word's nearest words out) and register it as a new version of `word2vec`; returns the
    version."""
    import gensim
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    example_input = ["king", "queen"]
    example_output = [{"word": "king", "known": True, "neighbours": [{"word": "queen", "cosine": 0.7}],
                       "vector": [0.1, -0.2]}, {"word": "queen", "known": False, "neighbours": []}]
    signature = infer_signature(example_input, example_output, params={"top": 10, "vectors": False})
    mlflow.set_tracking_uri(tracking_uri())
    with quiet_mlflow(), mlflow.start_run(run_id=run_id):
        logged = mlflow.pyfunc.log_model(
            name=PYFUNC_ARTIFACT, python_model=str(SERVING_MODEL_FILE),
            # No input example: MLflow would load the model to check it, the whole table and its unit copy (at
            # 1.1M words x 300 logging took 11.5 s and 3.1 GB with one, 3.1 s and 0.3 GB without).
            artifacts={"keyed_vectors": str(keyed_vectors_file)}, signature=signature,
            registered_model_name=MODEL_NAME,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"gensim=={gensim.__version__}",
                              f"numpy=={np.__version__}"])
    return str(logged.registered_model_version)


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Keep MLflow's chatter out of the stage's output while it logs and registers a model: a warning asking for
    type hints (which would drop the params from the signature; MLflow shows it whatever the filters say), its
    input-example check's INFO line and progress bar, and the registration's prints. Errors still raise; the stage's
    own line names the run, and the version once the champion alias is decided."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def update_champion(client: MlflowClient, run_id: str) -> str | None:
    """Give the run's model version the `champion` alias when its score beats the champion's (or
    there is none). Export and evaluate both call it, in whichever order DVC runs them: it acts once
    the run has both a version and a score. Returns what it did, or None when it cannot tell yet."""
    from mlflow.exceptions import MlflowException

    score = client.get_run(run_id).data.metrics.get(CHAMPION_METRIC)
    versions = [version for version in client.search_model_versions(f"run_id = '{run_id}'")
                if version.name == MODEL_NAME]
    if score is None or not versions:
        return None
    version = max(versions, key=lambda found: int(found.version))
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
        best = client.get_run(champion.run_id).data.metrics.get(CHAMPION_METRIC) if champion.run_id else None
    except MlflowException:  # no champion yet, or its run is gone
        champion, best = None, None
    if champion is not None and champion.version == version.version:
        return f"{MODEL_NAME} version {version.version} ({CHAMPION_METRIC} {score:.4f}) is @{CHAMPION_ALIAS}"
    if champion is not None and best is not None and best >= score:
        return (f"{MODEL_NAME} version {version.version} ({CHAMPION_METRIC} {score:.4f}) stays behind "
                f"@{CHAMPION_ALIAS}, version {champion.version} ({best:.4f})")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version.version)
    return f"{MODEL_NAME} version {version.version} ({CHAMPION_METRIC} {score:.4f}) is now @{CHAMPION_ALIAS}"


def _run_record(embedding_sha256: str) -> Path:
    return layout.project_root() / RUN_RECORDS_DIR / embedding_sha256


def remember_run(embedding_sha256: str, run_id: str) -> None:
    """Note on disk which run trained the embedding, for the stages that track into it while the store is down."""
    record = _run_record(embedding_sha256)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(run_id, encoding="utf-8")


def _remembered_run(embedding_sha256: str) -> str | None:
    record = _run_record(embedding_sha256)
    return record.read_text(encoding="utf-8").strip() if record.is_file() else None


def track_outputs(embedding_file: Path, requests: list[list[Any]]) -> str:
    """Add a stage's outputs to the run that trained `embedding_file` ("log_export", "log_evaluation"
    requests), then move the champion alias if it is now due; returns what was done.

    A store that does not answer does not stop the stage, nor `dvc repro`: the requests wait in the
    run's outbox (the run is known from this checkout's note of it) until `python -m pipeline sync`.
    """
    embedding_sha256 = file_sha256(embedding_file)
    for key, value in TRACKING_CHILD_ENV.items():  # fail over in seconds, not after minutes of retries
        os.environ.setdefault(key, value)
    run_id, done = _remembered_run(embedding_sha256), 0
    try:
        prepare_store()
        found = _newest_run_tagged(EMBEDDING_TAG, embedding_sha256)
        if found is None:
            return "no MLflow run to add them to (train's run is gone)"
        client, run_id = found
        for request in requests:
            _perform(client, run_id, request)
            done += 1
        champion = update_champion(client, run_id)
        return f"added to MLflow run {run_id}" + (f"; {champion}" if champion else "")
    except Exception as failure:  # the store's, whichever client raised it
        if run_id is None:
            return (f"not tracked: the MLflow store failed ({_one_line(failure)}) and this checkout has no note of "
                    "the run that trained this embedding")
        outbox = Outbox(run_id)
        for request in requests[done:]:
            outbox.add(request)
        print(f"WARNING: the MLflow store failed ({_one_line(failure)}): the outputs are written; their tracking "
              f"waits in {outbox.directory}: send it with `python -m pipeline sync` once {tracking_uri()} answers",
              flush=True)
        return f"tracking kept in {outbox.directory}"


def track_unchanged_outputs(embedding_file: Path) -> str | None:
    """Give a new training's run the exports and scores that `dvc repro` will not redo, because the training
    reproduced their embedding bit for bit (a fresh clone, `dvc repro --force`, a change to code that does
    not change the numbers): DVC then skips export or evaluate, and their outputs in the workspace are
    this embedding's. Returns what was done, or None when both stages will run."""
    from pipeline.dvc_lock import stage_matches_workspace

    requests = []
    if stage_matches_workspace("export"):
        requests.append(["log_export", str(layout.EXPORT_DIR)])
    if stage_matches_workspace("evaluate"):
        requests.append(["log_evaluation", str(layout.EVALUATE_METRICS_FILE), str(layout.NEIGHBOURS_FILE)])
    if not requests:
        return None
    names = " and ".join("exports" if request[0] == "log_export" else "scores" for request in requests)
    return f"the embedding is bit for bit the one DVC recorded: its {names}: {track_outputs(embedding_file, requests)}"


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
                     artifact_file="evaluation/neighbours_table.json")  # the plain file's name replaced the table
    for path in (metrics_file, neighbours_file):
        client.log_artifact(run_id, str(path), "evaluation")


def complete_run(client: MlflowClient, run_id: str, exports: Callable[[], Path | None],
                 scores: Callable[[], tuple[Path, Path] | None]) -> list[str]:
    """Give a run the exports and scores it lacks (a DVC experiment's, read from its commit); returns what
    was added. `exports` and `scores` give the export folder and the evaluate stage's two files, called
    only when needed."""
    added = []
    if not client.list_artifacts(run_id, "embeddings") and (export_dir := exports()) is not None:
        _perform(client, run_id, ["log_export", str(export_dir)])
        added.append("exports and model")
    if not client.list_artifacts(run_id, "evaluation") and (files := scores()) is not None:
        _perform(client, run_id, ["log_evaluation", *map(str, files)])
        added.append("scores")
    if added:
        update_champion(client, run_id)
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
