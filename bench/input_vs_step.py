"""Is the input pipeline ever the bottleneck? Input alone vs training step alone, same batches.

Runs in one process, on synthetic pairs over a Zipf-like vocabulary (so no corpus is needed):
(1) the training input pipeline (`make_dataset`: shards streamed, permuted, rebatched) drained
    with no model, and (2) the compiled training step fed from an in-memory cached dataset
    (no input work), and (3) both together, as the train stage runs them. For each optimizer and
    negatives mode. Writes bench/results/input_vs_step-<time>.md.

    python bench/input_vs_step.py [--pairs 2000000] [--batch-size 4096]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _results import publish

from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import Examples, noise_probabilities
from w2vpipe.training import make_dataset

VOCAB = 4096
NUM_NS = 4
CONFIGS = (("adam", True), ("sgd", True), ("sgd", False))


def synthetic(pairs: int, stored: bool) -> tuple[Examples, np.ndarray]:
    rng = np.random.default_rng(0)
    counts = (1e7 / np.arange(1, VOCAB + 1)).astype(np.int64)
    counts[0] = 0
    targets = np.minimum(rng.zipf(1.3, pairs), VOCAB - 1).astype(np.int32)
    columns = 1 + NUM_NS if stored else 1
    contexts = np.minimum(rng.zipf(1.3, (pairs, columns)), VOCAB - 1).astype(np.int32)
    return Examples(targets, contexts), counts


def drain(dataset, steps: int) -> float:
    iterator = iter(dataset)
    next(iterator)
    started = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return time.perf_counter() - started


def step_rate(examples: Examples, counts: np.ndarray, optimizer: str, stored: bool, batch: int,
              cached: bool) -> float:
    import tensorflow as tf

    from w2vpipe.model import build_word2vec

    steps = len(examples) // batch
    model = build_word2vec(VOCAB, 128, 1 + NUM_NS, optimizer=optimizer,
                           learning_rate=TrainParams(optimizer=optimizer, learning_rate=None).effective_learning_rate,
                           total_steps=steps * 3, num_ns_on_device=0 if stored else NUM_NS,
                           noise=None if stored else noise_probabilities("unigram", counts), seed=1,
                           jit_compile=True, steps_per_execution=min(64, steps))
    if cached:
        labels = np.zeros((len(examples), 1 + NUM_NS), np.float32)
        labels[:, 0] = 1
        dataset = (tf.data.Dataset.from_tensor_slices(((examples.inputs, examples.outputs), labels))
                   .batch(batch, drop_remainder=True).cache().repeat())
    else:
        dataset = make_dataset([examples], batch, steps, 0, 1 + NUM_NS, template=examples)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)  # compile
    started = time.perf_counter()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0)
    return 2 * steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--only-per-batch", action="store_true", help="measure only sgd with per-batch negatives")
    args = parser.parse_args()
    rows = []
    for optimizer, stored in CONFIGS[2:] if args.only_per_batch else CONFIGS:
        examples, counts = synthetic(args.pairs, stored)
        steps = len(examples) // args.batch_size
        dataset = make_dataset([examples], args.batch_size, steps, 0, 1 + NUM_NS, template=examples)
        input_alone = steps * args.batch_size / drain(dataset, steps)
        step_alone = step_rate(examples, counts, optimizer, stored, args.batch_size, cached=True)
        together = step_rate(examples, counts, optimizer, stored, args.batch_size, cached=False)
        mode = "stored" if stored else "per batch"
        rows.append(f"| {optimizer}, negatives {mode} | {input_alone / 1e6:.2f} | {step_alone / 1e6:.2f} | "
                    f"{together / 1e6:.2f} | {input_alone / step_alone:.1f}x |")
    publish("input_vs_step", [
        f"# Input pipeline alone vs training step alone — {os.cpu_count()} cores",
        "",
        f"{args.pairs:,} synthetic pairs, batch {args.batch_size}, vocabulary {VOCAB}, dimension 128, "
        f"{NUM_NS} negatives; millions of pairs/s.",
        "",
        "| configuration | input alone | step alone (cached input) | together (train stage) | input headroom |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
    ])
    os._exit(0)  # tf.data's generator threads can hold up interpreter shutdown


if __name__ == "__main__":
    main()
