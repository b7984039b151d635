"""The whole pipeline as one Prefect flow run, which is one DVC experiment and one MLflow run, one name.

A run (from the deployment's form in the Prefect UI, or `python -m pipeline run --set ...`) executes
`dvc exp run --temp -n NAME -S key=value ...`: DVC runs the stages in a temporary copy of the
repository, so the served checkout is never modified; `dvc exp show` lists the run, and `dvc exp
apply NAME` or `dvc exp branch NAME BRANCH` take its results. Each stage DVC runs (or skips) is a
Prefect task, with the stage's output as its logs. The stages tag their MLflow run with the flow run.
The run's Dask cluster (prefect-dask's DaskTaskRunner) serves every stage that runs shards on Dask.
"""

# No `from __future__ import annotations`: Prefect builds the run form from the flow's real type hints,
# also when a served deployment loads this file by path.
import contextlib
import fcntl
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, Failed, State
from prefect_dask import DaskTaskRunner
from pydantic import BaseModel

from pipeline import layout, report, tracking
from pipeline.cluster import SCHEDULER_ENV, local_cluster_options, scheduler_address
from pipeline.dvc_run import OUTCOMES, DvcProcess, git, stage_env
from w2vpipe.corpus import SERVED_RUN_ENV, SourcePolicy
from w2vpipe.errors import PipelineError
from w2vpipe.params import (
    ClusterParams,
    CorpusParams,
    EvaluateParams,
    ExamplesParams,
    ExportParams,
    Params,
    TrainParams,
    VectorizeParams,
    apply_overrides,
    changed_params,
    load_params,
    override,
    params_from_dict,
    parse_overrides,
    read_params_file,
)

FLOW_NAME = "word2vec-pipeline"
LOCK_FILE = Path(".dvc/tmp/pipeline-run.lock")


# The train stage's progress lines: "Epoch 3/20: 45% of ..." inside an epoch, "Epoch 3/20 - ..." at its end.
TRAINING_PROGRESS = re.compile(r"^Epoch (\d+)/(\d+)(?:: (\d+)% of| - )")


class TrainingProgress:
    """The train stage's progress lines as a progress artifact of its task run (the Prefect UI draws it as a
    bar): the share of all epochs done, every time the stage prints one (every 5 s inside an epoch)."""

    def __init__(self) -> None:
        self.artifact: UUID | None = None

    def __call__(self, line: str) -> None:
        match = TRAINING_PROGRESS.match(line)
        if not match:
            return
        epoch, epochs, percent = int(match.group(1)), int(match.group(2)), match.group(3)
        progress = 100 * (epoch - 1 + (int(percent) / 100 if percent else 1)) / epochs
        if self.artifact is None:
            self.artifact = create_progress_artifact(progress, key="word2vec-training",
                                                     description="share of the training's epochs done")
        else:
            update_progress_artifact(self.artifact, progress)


@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def stage_task(stage: str, outcome: str, dvc: DvcProcess) -> State:
    """One stage of the experiment, as DVC runs it: its lines are this task's logs (and the train stage's
    progress a progress artifact)."""
    logger = get_run_logger()
    if outcome != OUTCOMES["ran"]:  # a stage that runs announces itself
        logger.info("%s: %s", stage, outcome)
    progress = TrainingProgress() if stage == "train" else lambda line: None

    def log(line: str) -> None:
        (logger.error if line.startswith(("error:", "ERROR:")) else logger.info)(line)
        progress(line)

    try:
        dvc.stage_output(stage, log)
    except PipelineError as error:
        return Failed(message=str(error))  # the stage's own line, not a traceback
    return Completed(message=outcome)


# validate_parameters=False: the sections' type hints still make the deployment's form, but the run's
# values are validated below, by params_from_dict, so that a bad one (from the form, or from an API call
# that turned the server's schema check off) fails the run with the schema's one line, not Prefect's list.
@flow(name=FLOW_NAME, log_prints=True, validate_parameters=False)
def word2vec_pipeline(
    corpus: CorpusParams = CorpusParams(),
    vectorize: VectorizeParams = VectorizeParams(),
    examples: ExamplesParams = ExamplesParams(),
    train: TrainParams = TrainParams(),
    export: ExportParams = ExportParams(),
    evaluate: EvaluateParams = EvaluateParams(),
    cluster: ClusterParams = ClusterParams(),  # noqa: B008 (frozen, as the sections above)
) -> dict[str, Any] | State:
    """Download, vectorize, examples, train, export, evaluate, as one DVC experiment named after this run.

    Each section is params.yaml's (a model from the CLI, the API's JSON from a deployment); a stage whose
    inputs and params are unchanged is not rerun.
    """
    sections_given = {"corpus": corpus, "vectorize": vectorize, "examples": examples, "train": train,
                      "export": export, "evaluate": evaluate, "cluster": cluster}
    try:
        params = params_from_dict({name: section.model_dump() if isinstance(section, BaseModel) else section
                                   for name, section in sections_given.items()})
        served = bool(deployment.get_id())
        if served:  # whoever may start a run in the UI chooses corpus.url: a trust boundary
            SourcePolicy.from_env().check(params.corpus.url)
        return _run_experiment(params, str(flow_run.get_name()), str(flow_run.get_id()), served)
    except PipelineError as error:
        return Failed(message=str(error))  # one line for the user, not a traceback


def _run_experiment(params: Params, name: str, flow_run_id: str, served: bool) -> dict[str, Any]:
    logger = get_run_logger()
    # Only what differs from the checkout's params.yaml goes to DVC, as `dvc exp run -S` would be typed.
    overrides = changed_params(params, load_params(layout.PARAMS_FILE))
    _check_tracked()
    baseline = git("rev-parse", "HEAD")
    env = {tracking.PREFECT_FLOW_RUN_ENV: flow_run_id}
    if served:  # the download stage checks corpus.url again, at every redirect and connection
        env[SERVED_RUN_ENV] = "1"
    if flow_run.get_flow_run_ui_url():
        env[tracking.PREFECT_FLOW_RUN_URL_ENV] = str(flow_run.get_flow_run_ui_url())
    arguments = ["exp", "run", "--temp", "-n", name,
                 *(item for key, value in overrides.items() for item in ("-S", override(key, value)))]
    stages: dict[str, str] = {}
    with one_run_at_a_time(name), run_cluster(params.cluster) as address:
        if address:
            env[SCHEDULER_ENV] = address
        logger.info("dvc %s", " ".join(arguments))
        dvc = DvcProcess(arguments, stage_env(env))
        try:
            while (event := dvc.next_stage(logger.info)) is not None:
                state = stage_task(*event, dvc, return_state=True)
                if state.is_failed():
                    raise PipelineError(state.message or f"stage {event[0]} failed")
                stages[event[0]] = event[1]
            dvc.wait()
        finally:
            dvc.stop()
    revision = git("rev-parse", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}")
    results = report.read_results(lambda path: _git_file(revision, path))
    links = [f"DVC experiment `{name}` ({revision[:7]}): `dvc exp apply {name}` brings its outputs into the "
             f"workspace, `dvc exp branch {name} BRANCH` keeps them on a branch"]
    found = tracking.flow_run_training(flow_run_id, {"dvc.exp_rev": revision})
    if found:
        with tempfile.TemporaryDirectory() as scratch:
            tracking.complete_run(*found, lambda: _experiment_exports(revision, Path(scratch)),
                                  lambda: _experiment_scores(revision, Path(scratch)))
        links.append(f"MLflow run {tracking.run_link(*found)}; [every run, scores as columns]"
                     f"({tracking.runs_view_url(found[0])})")
    else:
        links.append("no new MLflow run: DVC restored the training from its run cache, so the run that first "
                     "trained these params holds its history")
    markdown = report.summary_markdown(f"word2vec run {name}", stages, changed_params(params, Params()), results,
                                       links)
    create_markdown_artifact(key="word2vec-summary", markdown=markdown, description=f"word2vec run {name}")
    return {"name": name, "revision": revision, "stages": stages, "overrides": overrides, "summary": markdown,
            **results}


@contextlib.contextmanager
def run_cluster(params: ClusterParams) -> Iterator[str | None]:
    """The scheduler address the stages of this run share: a local cluster started for the run by
    prefect-dask's DaskTaskRunner (`cluster.workers` processes), or None when the operator's
    W2V_DASK_SCHEDULER already names one, which the stages then use themselves. One cluster for the run
    saves each stage starting its own; the runner is opened here, not given as `@flow(task_runner=)`,
    because its workers come from the run's params."""
    if scheduler_address():
        yield None
        return
    # The scheduler and nannies run in this process, where Prefect's logging passes Dask's INFO lines on.
    dask_logger = logging.getLogger("distributed")
    level = dask_logger.level
    dask_logger.setLevel(logging.CRITICAL)
    try:
        with DaskTaskRunner(cluster_kwargs=local_cluster_options(params)) as runner:
            yield runner.client.scheduler.address
    finally:
        dask_logger.setLevel(level)


def _check_tracked() -> None:
    """DVC copies only git-tracked files into an experiment (treeverse/dvc#10056): say so before it fails."""
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "src", "pipeline", "dvc.yaml",
                    "params.yaml").split()
    if untracked:
        raise PipelineError(f"{', '.join(untracked[:3])} not tracked by git: a DVC experiment would run without "
                            f"{'them' if len(untracked) > 1 else 'it'}; `git add` (no commit needed) and rerun")


def _git_file(revision: str, path: Path) -> str | None:
    try:
        return git("show", f"{revision}:{path}")
    except PipelineError:
        return None


def _experiment_exports(revision: str, scratch: Path) -> Path:
    """The experiment's export folder, from DVC's cache."""
    from dvc.api import DVCFileSystem

    DVCFileSystem(str(layout.project_root()), rev=revision).get(str(layout.EXPORT_DIR), str(scratch / "exports"),
                                                               recursive=True)
    return scratch / "exports"


def _experiment_scores(revision: str, scratch: Path) -> tuple[Path, Path] | None:
    """The evaluate stage's files, from the experiment's commit."""
    files = []
    for path in (layout.EVALUATE_METRICS_FILE, layout.NEIGHBOURS_FILE):
        text = _git_file(revision, path)
        if text is None:
            return None
        files.append(scratch / path.name)
        files[-1].write_text(text, encoding="utf-8")
    return files[0], files[1]


@contextlib.contextmanager
def one_run_at_a_time(name: str) -> Iterator[None]:
    """Refuse a second run in this checkout while one is running (the deployment queues its own)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise PipelineError(f"another pipeline run ({lock.read().strip() or 'unknown'}) is running in this "
                                "checkout: wait for it, or queue experiments (dvc exp run --queue)") from None
        lock.truncate(0)
        lock.write(name)
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def sections(params: Params) -> dict[str, Any]:
    """The flow's parameters for `params`: one typed section each."""
    return {name: getattr(params, name) for name in Params.model_fields}


def run_from_cli(assignments: list[str], name: str | None) -> None:
    # A typo, or a run already holding this checkout, costs no flow run.
    params = params_from_dict(apply_overrides(read_params_file(layout.PARAMS_FILE), parse_overrides(assignments)))
    with one_run_at_a_time("checking"):
        pass
    pipeline = word2vec_pipeline.with_options(flow_run_name=name) if name else word2vec_pipeline
    state = pipeline(**sections(params), return_state=True)
    if not state.is_completed():
        raise PipelineError(state.message or f"flow run ended {state.name}")
    summary = state.result()
    name = summary["name"]
    print(f"\n{summary['summary']}\n\nRan experiment {name}: `dvc exp show` lists it, `dvc exp apply {name}` "
          "brings its results into the workspace.")


def serve(name: str) -> None:
    """A deployment whose runs start from the Prefect UI, one at a time.

    Its form starts from params.yaml as it is now: after editing params.yaml, restart `serve`, or the
    form's values (sent as they are) would undo the edit in the runs it starts.
    """
    if not layout.PARAMS_FILE.is_file():
        raise PipelineError("params.yaml not found: run `python -m pipeline serve` from the project root")
    SourcePolicy.from_env()  # a bad W2V_SERVE_ALLOWED_HOSTS stops `serve`, not each run
    word2vec_pipeline.serve(name=name, limit=1, parameters=sections(load_params(layout.PARAMS_FILE)))
