"""`cpu_sgd.train_steps` variants side by side, the kernel alone: pairs/s on synthetic Zipf batches.

    python bench/kernel_variants.py VOCAB DIM CALLS [THREADS] [NUM_NS]

Each variant is a copy of w2vpipe/cpu_sgd.py saved in a folder as cpu_sgd_<name>.py (here: old, new,
pf); each trains its own tables on the same CALLS blocks of 64 steps x 1024 rows (inputs and true
contexts drawn from a Zipf law over VOCAB words, NUM_NS negatives from its counts ^ 0.75), three
rounds in alternating order; medians printed. Set KERNELS to the folder (default /tmp/kb).
"""
import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("KERNELS", "/tmp/kb"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import numpy as np
V, D, NS, B, STEPS, CALLS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[5]) if len(sys.argv) > 5 else 5, 1024, 64, int(sys.argv[3])
rng = np.random.default_rng(0)
ranks = np.arange(1, V + 1)
p = 1.0 / ranks; p /= p.sum()
counts = (p * 1e7).astype(np.int64) + 1
noise_p = counts ** 0.75; noise_p = noise_p / noise_p.sum()
from w2vpipe.model import noise_table
table = noise_table(noise_p)
cdf = np.cumsum(p)
blocks = [(np.minimum(np.searchsorted(cdf, rng.random((STEPS, B))), V - 1).astype(np.int32),
           np.minimum(np.searchsorted(cdf, rng.random((STEPS, B, 1))), V - 1).astype(np.int32)) for _ in range(CALLS)]
mods = {name: importlib.import_module(f"cpu_sgd_{name}") for name in ("old", "new", "pf")}
tables = {name: (rng.random((V, D), dtype=np.float32) - 0.5) / D for name in mods}
ctx = {name: np.zeros((V, D), np.float32) for name in mods}
import numba
numba.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
numba.set_parallel_chunksize(1)
for name, m in mods.items():  # compile
    m.train_steps(tables[name], ctx[name], table, blocks[0][0][:1], blocks[0][1][:1], 0, 0.025, 10**6, 42, NS)
results = {name: [] for name in mods}
for round_ in range(3):
    for name in (["old", "new", "pf"] if round_ % 2 == 0 else ["pf", "new", "old"]):
        m = mods[name]
        t = time.perf_counter()
        for i, (inp, out) in enumerate(blocks):
            m.train_steps(tables[name], ctx[name], table, inp, out, i * STEPS, 0.025, 10**6, 42, NS)
        results[name].append(CALLS * STEPS * B / (time.perf_counter() - t))
for name, r in results.items():
    print(name, "pairs/s", [f"{x:,.0f}" for x in r], "median", f"{np.median(r):,.0f}")
