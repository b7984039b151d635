"""The CPU kernel alone (`cpu_sgd.train_steps`), this checkout's against another revision's: pairs/s.

    python bench/kernel_speed.py --against REV [--vocab 1115657] [--dim 300] [--num-ns 5] [--calls 20]
                                 [--threads 2] [--rounds 3]

Both kernels train their own tables on the same blocks of 64 steps x 1024 rows: input words and true
contexts drawn from a Zipf law over the vocabulary, negatives from its counts ^ 0.75 (word2vec.c's
noise), as a large corpus's batches look. Rounds alternate the order; medians are printed and written
to bench/results/kernel_speed-<time>.md. The revision's kernel is taken with `git show REV:...`.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
STEPS, BATCH = 64, 1024


def zipf_blocks(vocab: int, calls: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    from w2vpipe.tables import noise_table

    rng = np.random.default_rng(0)
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1))
    cdf /= cdf[-1]
    counts = np.diff(cdf, prepend=0.0) * 1e7 + 1
    blocks = [tuple(np.minimum(np.searchsorted(cdf, rng.random(shape)), vocab - 1).astype(np.int32)
                    for shape in ((STEPS, BATCH), (STEPS, BATCH, 1))) for _ in range(calls)]
    return blocks, noise_table(counts ** 0.75 / (counts ** 0.75).sum())  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="a git revision whose kernel to compare with")
    parser.add_argument("--vocab", type=int, default=1_115_657)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--num-ns", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        # Importable modules of their own names (numba's cache finds a kernel's module by name).
        (Path(scratch) / "cpu_sgd_ours.py").write_text((ROOT / "src" / "w2vpipe" / "cpu_sgd.py").read_text())
        (Path(scratch) / "cpu_sgd_theirs.py").write_text(subprocess.run(
            ["git", "show", f"{args.against}:src/w2vpipe/cpu_sgd.py"], cwd=ROOT, capture_output=True, text=True,
            check=True).stdout)
        sys.path.insert(0, scratch)
        kernels = {"this checkout": importlib.import_module("cpu_sgd_ours"),
                   args.against: importlib.import_module("cpu_sgd_theirs")}
        blocks, noise = zipf_blocks(args.vocab, args.calls)
        rng = np.random.default_rng(1)
        tables = {name: ((rng.random((args.vocab, args.dim), dtype=np.float32) - 0.5) / args.dim,
                         np.zeros((args.vocab, args.dim), np.float32)) for name in kernels}
        speeds: dict[str, list[float]] = {name: [] for name in kernels}
        for name, module in kernels.items():
            module.numba.set_num_threads(args.threads)
            module.numba.set_parallel_chunksize(1)
            module.train_steps(*tables[name], noise, blocks[0][0][:1], blocks[0][1][:1], 0, 0.025, 10**6, 42,
                               args.num_ns)  # compiled (or loaded) before timing
        for round_ in range(args.rounds):
            for name in list(kernels) if round_ % 2 == 0 else list(reversed(kernels)):
                started = time.perf_counter()
                for index, (inputs, outputs) in enumerate(blocks):
                    kernels[name].train_steps(*tables[name], noise, inputs, outputs, index * STEPS, 0.025, 10**6, 42,
                                              args.num_ns)
                speeds[name].append(args.calls * STEPS * BATCH / (time.perf_counter() - started))
    publish("kernel_speed", [
        f"# cpu_sgd.train_steps alone: {args.vocab:,} words x {args.dim}, {args.num_ns} negatives, "
        f"{args.threads} threads", "",
        f"Medians of {args.rounds} alternating rounds of {args.calls * STEPS * BATCH:,} pairs (Zipf batches).", "",
        "| kernel | pairs/s (median) | rounds |", "| --- | ---: | --- |",
        *(f"| {name} | {statistics.median(values):,.0f} | {', '.join(f'{value:,.0f}' for value in values)} |"
          for name, values in speeds.items())])


if __name__ == "__main__":
    main()
