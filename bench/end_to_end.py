"""10^8 words end to end: a cold `dvc repro` of every stage in a fresh clone against a whole gensim run.

    python bench/end_to_end.py [--words 1e8] [--updates hogwild] [--workdir /tmp/w2v-e2e] [--keep]

The corpus is `bench/zipf_corpus.py --words WORDS` (made once in WORKDIR). The clone (this checkout's HEAD)
trains at gensim's usual settings: every word seen 5 times or more, dimension 300, window 5, 5 negatives,
1 epoch, no held-out lines, `train.updates` as given. Then gensim 4 (`bench/gensim_word2vec.py --stream
--save`, 2 workers, the same settings). Both run under a sampler that sums the RSS of the whole process tree
every 0.2 s; each stage's wall time is how long its `python -m pipeline STAGE` process lived. Disk is what
each output folder, DVC's cache and MLflow's artifacts hold. Writes bench/results/end_to_end-<time>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml
from _results import publish

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("download", "vectorize", "examples", "train", "export", "evaluate")
GiB = 1024 ** 3


class TreeSampler(threading.Thread):
    """Peak RSS of a process and all its descendants together, and when each pipeline stage's process was seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak, self.done = psutil.Process(pid), 0, threading.Event()
        self.stages: dict[str, list[float]] = {}  # stage -> [first seen, last seen, its tree's peak RSS]

    def run(self) -> None:
        while not self.done.wait(0.2):
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total, now = 0, time.monotonic()
            for process in processes:
                try:
                    rss, command = process.memory_info().rss, process.cmdline()
                except psutil.Error:
                    continue
                total += rss
                if len(command) >= 4 and command[1:3] == ["-m", "pipeline"] and command[3] in STAGES:
                    seen = self.stages.setdefault(command[3], [now, now, 0])
                    seen[1] = now
                    seen[2] = max(seen[2], rss + sum(child.memory_info().rss for child in process.children(True)))
            self.peak = max(self.peak, total)


def sampled(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, TreeSampler, str]:
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(process.pid)
    sampler.start()
    output = process.communicate()[0]
    sampler.done.set()
    sampler.join()
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return time.monotonic() - started, sampler, output


def size(path: Path) -> int:
    files = [path] if path.is_file() else path.rglob("*") if path.exists() else []
    return sum(file.stat().st_size for file in files if file.is_file() and not file.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", default="1e8")
    parser.add_argument("--updates", choices=["batch", "hogwild"], default="batch")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/w2v-e2e"))
    parser.add_argument("--keep", action="store_true", help="keep the clone (tens of GB at 10^8 words)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus = args.workdir / f"zipf{args.words}.txt"
    if not corpus.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "zipf_corpus.py"), "--words", args.words, str(corpus)],
                       check=True)
    project = args.workdir / "project"
    shutil.rmtree(project, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project, capture_output=True, text=True,
                            check=True).stdout.strip()
    params = yaml.safe_load((project / "params.yaml").read_text())
    settings = {"corpus.url": str(corpus), "corpus.sha256": None, "vectorize.vocab_size": None,
                "vectorize.min_count": 5, "vectorize.validation_fraction": 0, "examples.window_size": 5,
                "examples.num_ns": 5, "train.embedding_dim": 300, "train.epochs": 1, "train.updates": args.updates}
    for key, value in settings.items():
        section, name = key.split(".")
        params[section][name] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)

    repro_seconds, repro, output = sampled(["dvc", "repro"], project, env)
    summary = [line for line in output.splitlines() if "pairs/s" in line and "fit in" in line]
    gensim_seconds, gensim_sampler, gensim_output = sampled(
        [sys.executable, str(ROOT / "bench" / "gensim_word2vec.py"), str(corpus), "--min-count", "5", "--dim", "300",
         "--window", "5", "--negative", "5", "--epochs", "1", "--workers", "2", "--stream", "--save",
         str(args.workdir / "gensim.bin")], ROOT, env)
    gensim = json.loads(gensim_output.strip().splitlines()[-1])

    disk = {name: size(project / name) for name in ("data/corpus", "data/vectorized", "data/examples", "models",
                                                     "exports", ".dvc/cache", "mlartifacts")}
    lines = [f"# {args.words} words end to end: `dvc repro` against gensim ({commit}, train.updates {args.updates})",
             "", f"Corpus `{corpus.name}` ({corpus.stat().st_size:,} bytes, `bench/zipf_corpus.py --words {args.words}`); "
             f"settings: {', '.join(f'{key} {value}' for key, value in settings.items() if key != 'corpus.url')}.", "",
             "| stage | wall (its process) | peak RSS (its process tree) |", "| --- | ---: | ---: |",
             *(f"| {stage} | {seen[1] - seen[0]:.1f} s | {seen[2] / GiB:.2f} GiB |"
               for stage, seen in sorted(repro.stages.items(), key=lambda item: STAGES.index(item[0]))),
             f"| **dvc repro, whole** | **{repro_seconds:.1f} s** | **{repro.peak / GiB:.2f} GiB** (all processes) |",
             f"| gensim, whole process | **{gensim_seconds:.1f} s** | **{gensim_sampler.peak / GiB:.2f} GiB** |", "",
             f"gensim: vocabulary {gensim['vocab']:.1f} s, train() {gensim['train']:.1f} s, save {gensim['save']:.1f} s; "
             f"{gensim['vocab_size']:,} words. The train stage: {summary[-1].strip() if summary else '(no summary)'}", "",
             f"Ratio (gensim's time over the pipeline's): whole **{gensim_seconds / repro_seconds:.2f}x**.", "",
             "Disk (bytes): " + ", ".join(f"`{name}` {value:,}" for name, value in disk.items())
             + f"; gensim's file {size(args.workdir / 'gensim.bin'):,}."]
    publish("end_to_end", lines)
    if not args.keep:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
