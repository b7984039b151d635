"""The training loop with 1, 2, ... copies of the tables (train.replicas), side by side on this machine.

    python bench/replicas_speed.py [--replicas 1 2] [--repeats 3] [--epochs 20]

Trains on the project's own example shards (run `make run` or `dvc repro examples` first) with
params.yaml's settings, changing only train.replicas; each run is a fresh process (JAX fixes its CPU
device count at start), runs alternate, and the table gives medians: the whole loop (`fit`, the
compiled program loaded from the compile cache, checkpoints and the held-out score included, as the
train stage times it) and the median epoch after the first. Writes
bench/results/replicas_speed-<time>.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_RUN = """
import json, sys, tempfile
from pathlib import Path
from w2vpipe.backend import cache_compiled_programs, select_backend
replicas, epochs = int(sys.argv[1]), int(sys.argv[2])
select_backend("jax", cpu_devices=replicas)
import numpy as np
from pipeline import layout
from pipeline.stages.train import noise, training_shards, validation_shards
from w2vpipe import distributed
from w2vpipe.params import load_params
from w2vpipe.training import train_word2vec
cache_compiled_programs()
params = load_params(Path("params.yaml"))
train = params.train.model_copy(update={"replicas": replicas, "epochs": epochs})
counts = np.load(layout.COUNTS_FILE)
stats = json.loads((layout.EXAMPLES_DIR / layout.STATS_FILE_NAME).read_text())
with tempfile.TemporaryDirectory() as scratch:
    result = train_word2vec(training_shards(params, counts), stats["pairs"], len(counts), train,
                            params.examples.num_ns, noise=noise(params, counts), validation=validation_shards(),
                            checkpoint_dir=Path(scratch) / "checkpoints", tensorboard_dir=Path(scratch) / "tb",
                            placement=distributed.placement(None, "jax", replicas), verbose=0)
print(json.dumps({"fit": result.fit_seconds, "pairs": result.steps_per_epoch * train.batch_size,
                  "loss": result.history["loss"][-1], "val_loss": result.history.get("val_loss", [None])[-1]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax"}
    env.pop("XLA_FLAGS", None)
    runs: dict[int, list[dict[str, float]]] = {count: [] for count in args.replicas}
    for repeat in range(args.repeats + 1):  # the first round fills the compile cache and is not counted
        for count in args.replicas:
            output = subprocess.run([sys.executable, "-c", ONE_RUN, str(count), str(args.epochs)], cwd=ROOT, env=env,
                                    capture_output=True, text=True, check=True).stdout
            if repeat:
                runs[count].append(json.loads(output.splitlines()[-1]))
        print(f"round {repeat}/{args.repeats} done", file=sys.stderr, flush=True)
    base = statistics.median(run["fit"] for run in runs[args.replicas[0]])
    lines = [f"# The training loop with 1, 2, ... copies — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
             "",
             f"{platform.node()}: {os.cpu_count()} cores. The project's examples and params.yaml, {args.epochs} epochs;"
             f" medians of {args.repeats} alternating runs, each a fresh process (the compile cache warm).",
             "",
             "| train.replicas | fit (s) | pairs/s | speed-up | final loss | final held-out loss |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for count, results in runs.items():
        fits = [run["fit"] for run in results]
        fit = statistics.median(fits)
        pairs = results[0]["pairs"] * args.epochs
        held_out = [run["val_loss"] for run in results if run["val_loss"] is not None]
        lines.append(f"| {count} | {fit:.2f} ({', '.join(f'{value:.2f}' for value in fits)}) | {pairs / fit:,.0f} | "
                     f"{base / fit:.2f}x | {statistics.median(run['loss'] for run in results):.1f} | "
                     + (f"{statistics.median(held_out):.1f} |" if held_out else "— |"))
    report = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / f"replicas_speed-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M}.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
