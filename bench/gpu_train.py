"""Training throughput of the pipeline's model on an accelerator, with any Keras backend.

Made for the GPU machine, which has JAX but neither TensorFlow nor Keras: it needs only numpy,
keras (carried as a wheel) and this repository's `src/`. It trains on example shards made here by
the examples stage (positives only: `examples.negatives: per_batch`), drawing negatives on the
device, with word2vec.c's SGD, and reports pairs/s, corpus words/s and the share of the memory
bandwidth bound that makes.

    KERAS_BACKEND=jax PYTHONPATH=src python bench/gpu_train.py data/examples --words 20000000 \
        [--epochs 3] [--batch-size 65536] [--dim 128] [--num-ns 4] [--bandwidth 3.35e12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", type=Path, help="an examples stage output folder (per_batch negatives)")
    parser.add_argument("--counts", type=Path, help="the vectorize stage's counts.npy (default: beside it)")
    parser.add_argument("--words", type=int, required=True, help="corpus words the examples came from")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-ns", type=int, default=4)
    parser.add_argument("--steps-per-execution", type=int, default=64)
    parser.add_argument("--bandwidth", type=float, default=3.35e12, help="device memory bandwidth, bytes/s")
    args = parser.parse_args()

    import keras

    from w2vpipe.files import SHARD_GLOB
    from w2vpipe.model import build_word2vec
    from w2vpipe.skipgrams import load_examples_shard, noise_probabilities

    counts = np.load(args.counts or args.examples.parent / "vectorized" / "counts.npy")
    shards = [load_examples_shard(path) for path in sorted(args.examples.glob(SHARD_GLOB))]
    targets = np.concatenate([shard.targets for shard in shards])
    positives = np.concatenate([shard.contexts[:, :1] for shard in shards])
    pairs = len(targets) // args.batch_size * args.batch_size
    labels = np.zeros((args.batch_size, 1 + args.num_ns), dtype=np.float32)
    labels[:, 0] = 1
    steps = pairs // args.batch_size

    model = build_word2vec(len(counts), args.dim, num_contexts=1 + args.num_ns, optimizer="sgd",
                           learning_rate=0.025, total_steps=steps * args.epochs, num_ns_on_device=args.num_ns,
                           noise=noise_probabilities("unigram", counts), seed=42, jit_compile=True,
                           steps_per_execution=min(args.steps_per_execution, steps))

    def batches():
        rng = np.random.default_rng(0)
        while True:
            order = rng.permutation(pairs)
            for start in range(0, pairs, args.batch_size):
                index = order[start : start + args.batch_size]
                yield (targets[index], positives[index]), labels

    model.fit(batches(), steps_per_epoch=min(steps, 2 * args.steps_per_execution), epochs=1, verbose=0)  # compile
    started = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - started
    pairs_per_second = pairs * args.epochs / seconds
    # Per pair: the target row and 1 + k context rows read, and as many written back.
    bytes_per_pair = 2 * (2 + args.num_ns) * args.dim * 4
    bound = args.bandwidth / bytes_per_pair
    print(json.dumps({
        "backend": keras.backend.backend(), "pairs": pairs, "epochs": args.epochs, "seconds": seconds,
        "pairs_per_s": pairs_per_second, "words_per_s": args.words * args.epochs * pairs / len(targets) / seconds,
        "bandwidth_bound_pairs_per_s": bound, "share_of_bound": pairs_per_second / bound,
    }, indent=2))


if __name__ == "__main__":
    main()
