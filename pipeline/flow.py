"""The whole pipeline as one Prefect flow, each stage a task that runs through DVC.

Prefect runs DVC, not the other way round: each task calls `dvc repro --single-item STAGE`, so a
run started from the Prefect UI goes through DVC's cache, lock and `dvc.lock` exactly like a
`dvc repro` typed in a shell, and `dvc repro` alone never pays for Prefect. Both entry points
run the same `python -m pipeline STAGE` commands and so give the same artifacts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from pipeline import layout
from pipeline.tracking import PREFECT_FLOW_RUN_ENV
from w2vpipe.corpus import DOWNLOAD_FAILED
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file
from w2vpipe.params import apply_overrides, params_from_dict, parse_overrides, read_params_file

FLOW_NAME = "word2vec-pipeline"
# What a stage prints when a failure may pass (the network): only then does Prefect retry.
TRANSIENT_ERROR_PREFIX = f"error: {DOWNLOAD_FAILED}"


class StageFailedError(PipelineError):
    def __init__(self, stage: str, message: str, transient: bool) -> None:
        super().__init__(f"stage {stage} failed: {message}")
        self.transient = transient


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except StageFailedError as error:
        return error.transient
    except Exception:
        return False
    return False


def check_overrides(overrides: dict[str, Any]) -> None:
    """Fail on a bad key or value before any stage runs."""
    params_from_dict(apply_overrides(read_params_file(layout.PARAMS_FILE), overrides))


def write_params(overrides: dict[str, Any]) -> None:
    """Validate the overrides against params.yaml and write them into it, comments kept.

    Like `dvc exp run -S`, the override stays in params.yaml, so `dvc.lock`, `git diff` and
    the MLflow run all show what this run used.
    """
    check_overrides(overrides)
    if overrides:
        from ruamel.yaml import YAML

        yaml = YAML()  # round-trip mode: keeps comments and key order
        yaml.width = 4096  # never fold long values such as URLs
        document = yaml.load(layout.PARAMS_FILE.read_text(encoding="utf-8"))
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            document[section][name] = value
        with atomic_file(layout.PARAMS_FILE) as tmp, tmp.open("w", encoding="utf-8") as out:
            yaml.dump(document, out)


@task(task_run_name="{stage}", retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_retry_if_transient)
def run_stage(stage: str) -> str:
    """Bring one stage up to date through DVC; returns "ran" or "up to date"."""
    logger = get_run_logger()
    # DVC runs `python -m pipeline STAGE` from PATH: make that this interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, PREFECT_FLOW_RUN_ENV: str(flow_run.get_id() or "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            logger.info(line)
    returncode = process.wait()
    if returncode != 0:
        errors = [line for line in lines if line.startswith("error:")]
        message = (errors or lines or [f"exit {returncode}"])[-1].removeprefix("error: ")
        raise StageFailedError(stage, message, transient=any(e.startswith(TRANSIENT_ERROR_PREFIX) for e in errors))
    return "up to date" if any("didn't change, skipping" in line for line in lines) else "ran"


@flow(name=FLOW_NAME, log_prints=True)
def word2vec_pipeline(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Download, vectorize, examples, train, export, evaluate: each stage through DVC, rerun only if stale.

    `overrides` maps params.yaml keys to values, e.g. {"train.epochs": 5}.
    """
    write_params(overrides or {})
    outcome = {}
    for stage in layout.STAGES:
        outcome[stage] = run_stage(stage)
    summary = {"stages": outcome, **_results()}
    create_markdown_artifact(key="word2vec-summary", markdown=_summary_markdown(summary),
                             description="word2vec pipeline run")
    return summary


def _results() -> dict[str, Any]:
    results: dict[str, Any] = {}
    stats_file = layout.EXAMPLES_DIR / layout.STATS_FILE_NAME
    for name, path in (("examples", stats_file), ("train", layout.TRAIN_METRICS_FILE),
                       ("evaluation", layout.EVALUATE_METRICS_FILE), ("neighbours", layout.NEIGHBOURS_FILE),
                       ("mlflow", layout.MLFLOW_RUN_FILE)):
        if path.is_file():
            results[name] = json.loads(path.read_text())
    return results


def _summary_markdown(summary: dict[str, Any]) -> str:
    rows = "\n".join(f"| {stage} | {outcome} |" for stage, outcome in summary["stages"].items())
    lines = ["# word2vec pipeline", "", "| stage | outcome |", "| --- | --- |", rows, ""]
    if "train" in summary:
        lines.append("Final " + ", ".join(f"{k} {v:.4f}" for k, v in summary["train"].items()))
    if "examples" in summary:
        lines.append(f"\nTrained on {summary['examples']['pairs']:,} examples.")
    if "evaluation" in summary:
        lines += ["", "| benchmark | score | coverage |", "| --- | ---: | ---: |"]
        for name, scores in summary["evaluation"].items():
            # Word pairs: Spearman; analogies: the share answered right.
            score = (f"{scores['spearman']:.3f}" if scores.get("spearman") is not None
                     else f"{scores['accuracy']:.1%}" if scores.get("accuracy") is not None else "n/a")
            lines.append(f"| {name} | {score} | {scores['coverage']:.1%} |")
    if "neighbours" in summary:
        lines += ["", "| probe | nearest words (cosine) |", "| --- | --- |"]
        for word, nearest in summary["neighbours"]["neighbours"].items():
            lines.append(f"| {word} | " + ", ".join(f"{n['word']} ({n['cosine']:.2f})" for n in nearest) + " |")
        for word in summary["neighbours"]["missing"]:
            lines.append(f"| {word} | not in the vocabulary |")
    if "mlflow" in summary:
        lines.append(f"\nMLflow run `{summary['mlflow']['run_id']}`.")
    return "\n".join(lines)


def run_from_cli(assignments: list[str]) -> None:
    overrides = parse_overrides(assignments)
    check_overrides(overrides)  # a typo costs no flow run
    state = word2vec_pipeline(overrides, return_state=True)
    if state.is_failed():
        error = state.result(raise_on_failure=False)
        raise error if isinstance(error, PipelineError) else PipelineError(f"flow run failed: {error}")
    summary = state.result()
    print(json.dumps(summary, indent=2, default=str))


def serve(name: str) -> None:
    """A deployment whose runs start from the Prefect UI, one at a time (DVC locks the repo)."""
    if not Path(layout.PARAMS_FILE).is_file():
        raise PipelineError("params.yaml not found: run `python -m pipeline serve` from the project root")
    word2vec_pipeline.serve(name=name, limit=1, parameters={"overrides": {}})
