"""`python -m pipeline STAGE | repro | run | serve | params`: the one entry point, for DVC, Prefect and people.

    python -m pipeline download            # one stage, as dvc.yaml runs it (no Prefect involved)
    python -m pipeline repro               # `dvc repro` in this workspace, then a summary (`make run`)
    python -m pipeline run --set train.epochs=5   # a Prefect flow run that is a DVC experiment
    python -m pipeline serve               # a Prefect deployment, runnable from the UI
    python -m pipeline params              # every param: default, allowed values, meaning
    python -m pipeline sync                # send the tracking kept on disk while the MLflow store was down
    python -m pipeline query neighbours king      # nearest words; also: analogy man king woman, similarity a b
    python -m pipeline compare             # the workspace and its DVC experiments: scores, differing params
    python -m pipeline recipe tutorial     # a committed recipe (recipes/NAME.yaml) as a DVC experiment
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time

from pipeline import compare, layout, query, recipes
from w2vpipe.errors import PipelineError, disk_full_as_one_line


def _run_stage(stage: str) -> None:
    from w2vpipe.params import load_params

    started = time.perf_counter()
    params = load_params(layout.PARAMS_FILE)
    print(f"[{stage}] starting", flush=True)
    # A full disk anywhere in the stage (its outputs, checkpoints, the outbox) is one line naming the file.
    with disk_full_as_one_line(f"the {stage} stage's files"):
        summary = importlib.import_module(f"pipeline.stages.{stage}").run(params)
    print(f"[{stage}] done in {time.perf_counter() - started:.2f} s: {summary}", flush=True)


def _repro(force: bool) -> None:
    from pipeline import report, tracking
    from pipeline.dvc_run import DvcProcess, follow
    from w2vpipe.params import Params, changed_params, load_params

    params = load_params(layout.PARAMS_FILE)  # a bad param stops here, before DVC starts
    tracking.prepare_store()
    stages = follow(DvcProcess(["repro", *(["--force"] if force else [])]), lambda line: print(line, flush=True))
    links = [f"exports: {layout.EXPORT_DIR}/ (vectors.tsv and metadata.tsv load in projector.tensorflow.org)"]
    found = tracking.training_run(layout.EMBEDDING_FILE)
    if found:
        links.append(f"MLflow run {tracking.run_link(*found)}; [every run, scores as columns]"
                     f"({tracking.runs_view_url(found[0])}) (`make ui-mlflow` serves them)")
    print("\n" + report.summary_markdown("word2vec pipeline", stages, changed_params(params, Params()),
                                         report.read_results(report.workspace_file), links))


def _sync() -> None:
    from pipeline import tracking

    tracking.check_store()
    sent = tracking.send_outboxes()
    print("\n".join(sent) if sent else f"nothing to send: every run is in {tracking.tracking_uri()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in layout.STAGES:
        commands.add_parser(stage, help=f"run the {stage} stage alone (what dvc.yaml runs)")
    repro_parser = commands.add_parser("repro", help="dvc repro in this workspace, then a summary")
    repro_parser.add_argument("--force", action="store_true", help="rerun every stage (dvc repro --force)")
    run_parser = commands.add_parser("run", help="run the pipeline as a Prefect flow run and a DVC experiment")
    run_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a params.yaml key, e.g. --set train.epochs=5 (repeatable)")
    run_parser.add_argument("--name", help="the run's name (flow run, DVC experiment, MLflow run); default: Prefect's")
    commands.add_parser("params", help="print every param as a markdown table (the README's)")
    query.add_parser(commands)
    compare.add_parser(commands)
    recipes.add_parser(commands)
    commands.add_parser("sync", help="send the tracking that trainings kept on disk while the MLflow store was down")
    serve_parser = commands.add_parser("serve", help="serve the flow as a Prefect deployment (runs from the UI)")
    serve_parser.add_argument("--name", default="word2vec", help="deployment name (default: word2vec)")
    args = parser.parse_args(argv)

    # TensorFlow's C++ log lines (a CUDA probe's "error" on a machine without GPU among them) bury
    # the stage's own; its real failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # SIGTERM (`kill`, a scheduler's stop) unwinds like Ctrl-C: temporary files go, the MLflow run ends KILLED.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.command in layout.STAGES:
            _run_stage(args.command)
        elif args.command == "repro":
            _repro(args.force)
        elif args.command == "run":
            from pipeline.flow import run_from_cli

            run_from_cli(args.overrides, args.name)
        elif args.command == "query":
            query.run(args)
        elif args.command == "compare":
            compare.run(args)
        elif args.command == "recipe":
            recipes.run(args)
        elif args.command == "sync":
            _sync()
        elif args.command == "params":
            from w2vpipe.params import markdown_table

            print(markdown_table())
        else:
            from pipeline.flow import serve

            serve(args.name)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
