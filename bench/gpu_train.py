"""The train stage's own training code (`w2vpipe.training.train_word2vec`) on an accelerator, timed.

For the GPU machine (JAX, no TensorFlow or Keras there). Made here first: `bash bench/gpu_prepare.sh`
writes .gpudata/ (the default recipe's example shards and counts, by the pipeline's own stages) and
.whl/ (keras, namex, optree, pydantic and the rest the library imports that the machine lacks). Then
the device tool's `run`, carry [".whl", ".gpudata"], with this one line:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src KERAS_BACKEND=jax PYTHONUNBUFFERED=1 && python3 bench/gpu_train.py .gpudata --out "$OUT" --epochs 20 --batch-size 1024 4096 65536 --shared-negatives 0 256 && python3 bench/gpu_train.py .gpudata --out "$OUT" --synthetic-vocab 100000 --epochs 3 --batch-size 65536 --shared-negatives 0 256

Each configuration trains `--epochs` epochs and reports steady pairs/s and corpus words/s (epochs after
the first, which compiles), and their share of the memory-bandwidth bound: a pair with k negatives at
dimension d moves about (k + 2) * d * 4 bytes each way. `--synthetic-vocab` trains on Zipf-distributed
random pairs over that many words instead (for the speed at a large vocabulary; its vectors mean
nothing). Embeddings trained on the real examples are saved to --out, to be scored here with
`python -m pipeline query`/`w2vpipe.evaluation` (the GPU machine has no gensim). Runs on the CPU too:

    KERAS_BACKEND=jax PYTHONPATH=src python bench/gpu_train.py .gpudata --epochs 3 --batch-size 1024
"""  # noqa: E501 (the one-line command above)

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_examples(vocab: int, pairs: int, seed: int = 0) -> tuple[Any, np.ndarray]:
    """Skip-gram pairs whose words follow Zipf's law over `vocab` words, and their counts."""
    from w2vpipe.skipgrams import Examples

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab)
    cdf = np.cumsum(weights) / weights.sum()
    words = (np.searchsorted(cdf, rng.random(2 * pairs)) + 1).astype(np.int32)
    counts = np.bincount(words, minlength=vocab).astype(np.int64)
    return Examples(inputs=words[:pairs], outputs=words[pairs:, None]), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="gpu_prepare.sh's folder: examples/ and vectorized/counts.npy")
    parser.add_argument("--out", type=Path, help="where the embeddings and results.json go")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1024])
    parser.add_argument("--shared-negatives", type=int, nargs="+", default=[0])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-ns", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=0.03, help="per pair at batch 1024 (scaled down above)")
    parser.add_argument("--synthetic-vocab", type=int, help="train on Zipfian random pairs over this many words")
    parser.add_argument("--bandwidth", type=float, default=3.35e12, help="device memory bandwidth, bytes/s (H100)")
    args = parser.parse_args()

    from w2vpipe.backend import import_keras

    keras = import_keras()
    from w2vpipe.files import SHARD_GLOB
    from w2vpipe.params import TrainParams
    from w2vpipe.skipgrams import noise_probabilities
    from w2vpipe.training import train_word2vec

    stats = json.loads((args.data / "examples" / "stats.json").read_text())
    words_per_epoch = json.loads((args.data / "vectorized" / "stats.json").read_text())["words"]
    if args.synthetic_vocab:
        # As many pairs per corpus word as the real examples have.
        pairs = max(stats["pairs"], 20_000_000)
        example, counts = synthetic_examples(args.synthetic_vocab, pairs)
        shards: list[Any] = [example]
        words_per_epoch = int(pairs * words_per_epoch / stats["pairs"])
    else:
        counts = np.load(args.data / "vectorized" / "counts.npy")
        shards = sorted((args.data / "examples").glob(SHARD_GLOB))
        pairs = stats["pairs"]
    device = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    bytes_per_pair = 2 * (args.num_ns + 2) * args.dim * 4
    bound = args.bandwidth / bytes_per_pair
    results = []
    for batch_size in args.batch_size:
        for shared in args.shared_negatives:
            params = TrainParams(batch_size=batch_size, epochs=args.epochs, embedding_dim=args.dim, backend="jax",
                                 learning_rate=args.learning_rate * min(1.0, 1024 / batch_size),
                                 shared_negatives=shared)
            ends: list[float] = []
            result = train_word2vec(shards, pairs, len(counts), params, args.num_ns,
                                    noise=noise_probabilities("unigram", counts), verbose=0,
                                    on_epoch_end=lambda epoch, logs, ends=ends: ends.append(time.perf_counter()))
            steady = (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else result.fit_seconds
            pairs_per_s = result.steps_per_epoch * batch_size / steady
            row = {"device": device, "vocab": len(counts), "batch_size": batch_size, "shared_negatives": shared,
                   "epochs": args.epochs, "fit_seconds": round(result.fit_seconds, 2),
                   "pairs_per_s": round(pairs_per_s),
                   "corpus_words_per_s": round(pairs_per_s * words_per_epoch / pairs),
                   "share_of_bandwidth_bound": round(pairs_per_s / bound, 4),
                   "loss_first_last": [round(result.history["loss"][0] / batch_size, 4),
                                       round(result.history["loss"][-1] / batch_size, 4)]}
            print(json.dumps(row), flush=True)
            results.append(row)
            if args.out is not None and not args.synthetic_vocab:
                args.out.mkdir(parents=True, exist_ok=True)
                np.save(args.out / f"embedding-b{batch_size}-s{shared}.npy", result.tables[0])
    if args.out is not None:
        name = f"results-{'synthetic' if args.synthetic_vocab else 'real'}.json"
        (args.out / name).write_text(json.dumps(results, indent=2))
    print(f"tensorflow imported: {'tensorflow' in sys.modules}")


if __name__ == "__main__":
    main()
