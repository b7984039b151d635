"""`python -m pipeline STAGE | run | serve`: the one entry point, for DVC, Prefect and people.

    python -m pipeline download            # one stage, as dvc.yaml runs it (no Prefect involved)
    python -m pipeline run --set train.epochs=5   # the whole pipeline as one Prefect flow run
    python -m pipeline serve               # a Prefect deployment, runnable from the UI
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from pipeline import layout
from w2vpipe.errors import PipelineError


def _run_stage(stage: str) -> None:
    from w2vpipe.params import load_params

    started = time.perf_counter()
    params = load_params(layout.PARAMS_FILE)
    print(f"[{stage}] starting", flush=True)
    summary = importlib.import_module(f"pipeline.stages.{stage}").run(params)
    print(f"[{stage}] done in {time.perf_counter() - started:.2f} s: {summary}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in layout.STAGES:
        commands.add_parser(stage, help=f"run the {stage} stage alone (what dvc.yaml runs)")
    run_parser = commands.add_parser("run", help="run the whole pipeline as one Prefect flow, through DVC")
    run_parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a params.yaml key, e.g. --set train.epochs=5 (repeatable)")
    serve_parser = commands.add_parser("serve", help="serve the flow as a Prefect deployment (runs from the UI)")
    serve_parser.add_argument("--name", default="word2vec", help="deployment name (default: word2vec)")
    args = parser.parse_args(argv)

    # TensorFlow's C++ log lines (a CUDA probe's "error" on a machine without GPU among them) bury
    # the stage's own; its real failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        if args.command in layout.STAGES:
            _run_stage(args.command)
        elif args.command == "run":
            from pipeline.flow import run_from_cli

            run_from_cli(args.overrides)
        else:
            from pipeline.flow import serve

            serve(args.name)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
