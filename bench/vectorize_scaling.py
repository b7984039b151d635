"""The vectorize and examples stages on 1 and 2 Dask workers (`cluster.workers`), at a scaled corpus.

    python bench/vectorize_scaling.py [--corpus ../shared/corpora/shakespeare.txt] [--words 2e7]
                                      [--repeats 3] [--workers 1 2]

The corpus is repeated to --words words (bench/benchmark.py's scaled_corpus); each stage runs as
`python -m pipeline STAGE` (the default params.yaml otherwise), worker counts alternating, medians of
--repeats runs. Per stage: wall time (interpreter, imports, local cluster start and stop included),
its own work time (the "made in" of its summary: from the cluster being up to its outputs written),
the largest process's peak RSS (/usr/bin/time) and the peak RSS of the stage's whole process tree
(the stage and its workers, sampled every 50 ms). And a sha256 over every file of data/vectorized
and data/examples: the same for any number of workers. The load average before each run is kept,
since other work on the machine disturbs the times. Writes bench/results/vectorize_scaling-<time>.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from _results import publish
from benchmark import ROOT, corpus_words, project, scaled_corpus

STAGES = ("vectorize", "examples")


def tree_rss_mib(process: psutil.Process) -> float:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:  # gone between the listing and the reading
            pass
    return total / 2**20


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, largest process's peak RSS MiB, process tree's peak RSS MiB, stdout) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        process = subprocess.Popen(["/usr/bin/time", "-f", "%e %M", "-o", report.name, *command], cwd=cwd, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = [0.0]

        def sample() -> None:
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                try:
                    peak[0] = max(peak[0], tree_rss_mib(watched))
                except psutil.Error:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = process.communicate()
        wall = time.perf_counter() - started
        sampler.join()
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{out[-2000:]}\n{err[-3000:]}")
        _, rss_kib = report.read().split()[-2:]
    return wall, int(rss_kib) / 1024, peak[0], out


def outputs_sha256(root: Path) -> str:
    """One sha256 over every file (relative path and bytes) of data/vectorized and data/examples."""
    digest = hashlib.sha256()
    for name in ("vectorized", "examples"):
        folder = root / "data" / name
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def set_workers(root: Path, workers: int) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault("cluster", {})["workers"] = workers
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_once(root: Path, workers: int, env: dict[str, str]) -> dict[str, float | str]:
    set_workers(root, workers)
    result: dict[str, float | str] = {"load": os.getloadavg()[0]}
    for stage in STAGES:
        wall, rss, tree_rss, out = timed([sys.executable, "-m", "pipeline", stage], root, env)
        found = re.search(rf"; {workers} workers?; made in ([0-9.]+) s", out)
        if not found:
            raise SystemExit(f"{stage} did not run on {workers} workers:\n{out[-2000:]}")
        result |= {stage: wall, f"{stage} work": float(found.group(1)), f"{stage} rss": rss,
                   f"{stage} tree rss": tree_rss}
    result["sha256"] = outputs_sha256(root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "shakespeare.txt")
    parser.add_argument("--words", type=float, default=2e7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    runs: dict[int, list[dict[str, float | str]]] = {workers: [] for workers in args.workers}
    with tempfile.TemporaryDirectory(prefix="w2v-scaling-") as tmp:
        corpus = scaled_corpus(args.corpus, int(args.words), Path(tmp) / "scaled.txt")
        words = corpus_words(corpus)
        (Path(tmp) / "project").mkdir()
        root = project(Path(tmp) / "project", corpus, {})
        for repeat in range(args.repeats):
            # Alternating, and the order reversed every other round: drift in the machine's load hits both alike.
            for workers in args.workers if repeat % 2 == 0 else list(reversed(args.workers)):
                runs[workers].append(run_once(root, workers, env))
                print(f"round {repeat + 1}, {workers} workers: {runs[workers][-1]}", flush=True)

    def median(workers: int, key: str) -> float:
        return statistics.median(float(run[key]) for run in runs[workers])

    base = args.workers[0]
    loads = ", ".join(f"{float(run['load']):.2f}" for workers in args.workers for run in runs[workers])
    lines = [f"# vectorize and examples on 1 and 2 Dask workers, {words:,} words",
             "",
             f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; corpus: "
             f"{args.corpus.name} repeated to {words:,} words (the default params.yaml: whole lines, "
             f"100,000-line shards); medians of {args.repeats} alternating runs; load average (1 min) before the "
             f"runs: {loads}.",
             "",
             "| workers | vectorize wall s | vectorize work s | speed-up (work / wall) | largest process RSS MiB "
             "| process tree RSS MiB | examples wall s | examples work s | speed-up (work / wall) "
             "| largest process RSS MiB | process tree RSS MiB | sha256 of data/vectorized + data/examples |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for workers in args.workers:
        hashes = sorted({str(run["sha256"]) for run in runs[workers]})
        cells = [str(workers)]
        for stage in STAGES:
            cells += [f"{median(workers, stage):.2f}", f"{median(workers, f'{stage} work'):.2f}",
                      f"{median(base, f'{stage} work') / median(workers, f'{stage} work'):.2f}x / "
                      f"{median(base, stage) / median(workers, stage):.2f}x",
                      f"{median(workers, f'{stage} rss'):.0f}", f"{median(workers, f'{stage} tree rss'):.0f}"]
        cells.append(" ".join(f"`{digest[:16]}`" for digest in hashes))
        lines.append("| " + " | ".join(cells) + " |")
    every = {str(run["sha256"]) for per_workers in runs.values() for run in per_workers}
    lines += ["", f"Outputs of all {sum(len(r) for r in runs.values())} runs identical: {len(every) == 1} "
                  f"(sha256 {next(iter(every)) if len(every) == 1 else ', '.join(sorted(every))})."]
    print(publish("vectorize_scaling", lines))


if __name__ == "__main__":
    main()
