"""Cold `dvc repro` of the pipeline against the TensorFlow tutorial's own code, side by side.

Each repeat runs, alternately, (a) the tutorial's code (bench/tutorial_word2vec.py) and (b) a cold
`dvc repro` in a fresh copy of this project (no outputs, no DVC cache, no MLflow store), on the
same corpus and machine. Reports per-phase and total wall times (median of the repeats) and
writes a markdown table to bench/results/. The pipeline runs the project's defaults (params.yaml), or
the tutorial's recipe (recipes/tutorial.yaml) with `--params tutorial`.

    python bench/repro_vs_tutorial.py [--corpus ../shared/corpora/shakespeare.txt] [--repeats 3]
                                      [--params defaults|tutorial]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import publish

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("download", "vectorize", "examples", "train", "export", "evaluate")
TUTORIAL_PHASES = ("import", "vectorize", "examples", "train", "export")


def project_copy(destination: Path, corpus: Path, recipe: str) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("tests/", "bench/", "docs/")) and name != "dvc.lock":
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    if recipe == "tutorial":
        shutil.copy2(ROOT / "recipes" / "tutorial.yaml", destination / "params.yaml")
    if corpus.name != "shakespeare.txt":
        params = (destination / "params.yaml").read_text()
        params = "\n".join(
            f"  url: {corpus}" if line.startswith("  url:") else "  sha256: null" if line.startswith("  sha256:")
            else line for line in params.splitlines())
        (destination / "params.yaml").write_text(params + "\n")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=destination, check=True, capture_output=True)
    return destination


def time_pipeline(corpus: Path, env: dict[str, str], recipe: str) -> dict[str, float]:
    """Wall time of a cold `dvc repro`, and of each stage as DVC runs it (its overhead included)."""
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        project = project_copy(Path(tmp), corpus, recipe)
        started = time.perf_counter()
        process = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        marks: list[tuple[str, float]] = []
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Running stage '"):
                marks.append((line.split("'")[1], time.perf_counter()))
        if process.wait() != 0:
            raise SystemExit(f"dvc repro failed in {project}")
        ended = time.perf_counter()
        times = {"total": ended - started, "dvc start": marks[0][1] - started}
        for (stage, begun), (_, next_begun) in zip(marks, [*marks[1:], ("", ended)], strict=True):
            times[stage] = next_begun - begun
        vectors = (project / "exports" / "vectors.tsv").read_text().count("\n")
        times["vectors"] = float(vectors)
        return times


def time_tutorial(corpus: Path, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="w2v-tutorial-") as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "bench" / "tutorial_word2vec.py"), str(corpus), "--out", tmp,
                        "--json", f"{tmp}/phases.json"], env=env, check=True, capture_output=True)
        total = time.perf_counter() - started
        phases = json.loads(Path(f"{tmp}/phases.json").read_text())
        return {**{phase: phases[phase] for phase in TUTORIAL_PHASES}, "total": total}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "shakespeare.txt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", choices=["defaults", "tutorial"], default="defaults",
                        help="the pipeline's params: params.yaml, or the tutorial's recipe")
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "W2V_CORPUS_MIRROR": str(corpus.parent),
           "TF_CPP_MIN_LOG_LEVEL": "2", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)

    tutorial_runs, pipeline_runs = [], []
    for repeat in range(1, args.repeats + 1):
        tutorial_runs.append(time_tutorial(corpus, env))
        pipeline_runs.append(time_pipeline(corpus, env, args.params))
        print(f"repeat {repeat}: tutorial {tutorial_runs[-1]['total']:.1f} s, "
              f"dvc repro {pipeline_runs[-1]['total']:.1f} s", file=sys.stderr, flush=True)

    rows = [
        ("start-up (tutorial: import TF; pipeline: dvc)", median(tutorial_runs, "import"),
         median(pipeline_runs, "dvc start")),
        ("download", None, median(pipeline_runs, "download")),
        ("vectorize", median(tutorial_runs, "vectorize"), median(pipeline_runs, "vectorize")),
        ("examples", median(tutorial_runs, "examples"), median(pipeline_runs, "examples")),
        ("train (20 epochs)", median(tutorial_runs, "train"), median(pipeline_runs, "train")),
        ("export", median(tutorial_runs, "export"), median(pipeline_runs, "export")),
        ("evaluate (the tutorial has none)", None, median(pipeline_runs, "evaluate")),
        ("**total wall time**", median(tutorial_runs, "total"), median(pipeline_runs, "total")),
    ]
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"# Cold `dvc repro` vs the tutorial's code — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Corpus `{corpus.name}` ({corpus.stat().st_size:,} bytes); {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; median of {args.repeats} alternating runs.",
        "Pipeline stage times are process wall times as DVC runs them (Python start-up, imports, MLflow, "
        "DVC's hashing and caching included); the tutorial's are its phases inside one process. "
        "The pipeline runs " + ("the tutorial's recipe (recipes/tutorial.yaml)." if args.params == "tutorial"
                                else "the project's defaults (params.yaml)."),
        "",
        "| phase | tutorial (s) | pipeline (s) |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {'—' if a is None else f'{a:.2f}'} | {b:.2f} |" for name, a, b in rows),
        "",
        f"Pipeline / tutorial total: **{median(pipeline_runs, 'total') / median(tutorial_runs, 'total'):.2f}**. "
        f"All runs (s): tutorial {[round(r['total'], 1) for r in tutorial_runs]}, "
        f"pipeline {[round(r['total'], 1) for r in pipeline_runs]}.",
    ]
    publish("repro_vs_tutorial", lines)


if __name__ == "__main__":
    main()
