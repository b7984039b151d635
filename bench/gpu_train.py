"""Training throughput of the pipeline's model on an accelerator, with any Keras backend (JAX: fastest).

On the GPU machine (device tool `run`, carry [".whl", ".gpudata"]), one line:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src KERAS_BACKEND=jax PYTHONUNBUFFERED=1 && python3 bench/gpu_train.py .gpudata/examples --words 202646 --input-only && python3 bench/gpu_train.py .gpudata/examples --words 202646 --epochs 1000 --batch-size 65536 --learning-rate 0.002

Made here first, with `bash bench/gpu_prepare.sh [CORPUS]`: the examples of the benchmark's
"fast" params (positives only, Shakespeare by default: 202,646 words, 435,578 pairs) in .gpudata/,
made by the pipeline's own stages, and the wheels in .whl/.

The GPU machine has JAX but neither TensorFlow nor Keras: this needs only numpy, keras (carried as
wheels with namex and optree) and this repository's `src/`, and never imports TensorFlow. It
trains on example shards of positives only, drawing negatives on the device, with word2vec.c's
SGD (its loss summed over the batch, so a large batch needs a smaller `--learning-rate`: 0.025
diverges at 65,536), and reports pairs/s, corpus words/s and the share of the memory bandwidth
bound that makes. That bound assumes the embedding rows come from device memory; two tables of
4,096 x 128 floats sit in an H100's 50 MB L2 cache, where the share can pass 1.

With JAX the input never touches the host: the pairs go to the device once, shuffled, and one
compiled call runs `--steps-per-execution` of Keras's own `train_step`s in a loop, each gathering
its batch there (see DeviceTrainer). `--input-only` times that input alone and, for comparison, a
Python generator of the same batches. Other backends, or `--keras-fit`, run `model.fit` on such a
generator, which caps a fast accelerator at its batches/s.

    KERAS_BACKEND=jax PYTHONPATH=src python bench/gpu_train.py data/examples --words 20000000 \
        [--epochs 3] [--batch-size 65536] [--learning-rate 0.025] [--dim 128] [--num-ns 4] \
        [--bandwidth 3.35e12] [--steps-per-execution 64] [--input-only] [--keras-fit]
"""  # noqa: E501 (the one-line command above)

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def python_batches(targets: np.ndarray, positives: np.ndarray, labels: np.ndarray, batch_size: int,
                   steps: int) -> Iterator[tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]:
    """Shuffled batches from the host, for `model.fit` (any backend)."""
    rng = np.random.default_rng(0)
    while True:
        order = rng.permutation(len(targets))
        for start in range(0, steps * batch_size, batch_size):
            index = order[start : start + batch_size]
            yield (targets[index], positives[index]), labels


def build_training_state(model: Any, num_contexts: int) -> None:
    """Builds the compiled loss, the metrics and the optimizer, as `fit` would before its first step.

    `fit` under JAX builds them from the model's symbolic output with `training=False`, which has one
    column only (negatives are drawn while training alone), and so fails against the (batch, 1 + k)
    labels. Built here from a training-shaped output instead; `fit` then skips that build.
    """
    y = np.zeros((1, num_contexts), dtype=np.float32)
    y[:, 0] = 1
    model.compute_loss(y=y, y_pred=y)
    model.compute_metrics(None, y, y, None)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)


class DeviceTrainer:
    """Keras's JAX `train_step`, `steps_per_call` of them per compiled call, on device-resident pairs.

    The pairs are shuffled once on the host and moved to the device once. Each epoch then visits
    the batches (consecutive runs of the shuffled pairs) in a new random order, from a new random
    rotation, so the pairs left over by the last whole batch change too; a batch's index is an iota
    plus an offset, modulo the pair count. The batches' make-up is thus that of one shuffle (as with
    tf.data's `reshuffle_each_iteration=False`): a full permutation per epoch would cost a sort of
    all pairs, 0.17 s per 435k pairs under XLA on two CPU cores, half an epoch there.
    """

    def __init__(self, model: Any, targets: np.ndarray, positives: np.ndarray, labels: np.ndarray,
                 batch_size: int, steps_per_call: int) -> None:
        import jax
        from jax import lax
        from jax import numpy as jnp

        self.jax, self.model, self.batch_size = jax, model, batch_size
        self.pairs = len(targets)
        if self.pairs >= 1 << 30:  # offset + batch start + iota stays an int32
            raise ValueError(f"{self.pairs:,} pairs: at most 2^30 fit this int32 indexing")
        self.steps_per_epoch = self.pairs // batch_size
        self.steps_per_call = max(1, min(steps_per_call, self.steps_per_epoch))
        self.rng = np.random.default_rng(0)
        order = self.rng.permutation(self.pairs)
        self.data = jax.device_put((targets[order].astype(np.int32), positives[order].astype(np.int32), labels))
        pairs = self.pairs

        def batch(data: Any, batches: Any, offset: Any, i: Any) -> tuple[Any, Any]:
            index = (offset + batches[i] * batch_size + jnp.arange(batch_size, dtype=jnp.int32)) % pairs
            return data[0][index], data[1][index]

        def run(state: Any, data: Any, batches: Any, offset: Any, start: Any, count: int) -> Any:
            def step(j: Any, state: Any) -> Any:
                _, state = model.train_step(state, (batch(data, batches, offset, start + j), data[2]))
                return state

            return lax.fori_loop(0, count, step, state)

        def drain(total: Any, data: Any, batches: Any, offset: Any, start: Any, count: int) -> Any:
            """The input alone: every batch gathered, and a checksum of it so none is skipped."""
            def step(j: Any, total: Any) -> Any:
                targets, positives = batch(data, batches, offset, start + j)
                return total + targets.sum() + positives.sum()

            return lax.fori_loop(0, count, step, total)

        started = time.perf_counter()
        # Compiled ahead of the clock. The steps per call are fixed in each program (a loop of known
        # trip count: XLA on a GPU then needs no predicate back on the host each step), so there is
        # one program for a whole call and, where the epoch does not divide, one for its last.
        example = (self.data, *self.epoch_order(), np.int32(0))
        counts = {self.steps_per_call, self.steps_per_epoch % self.steps_per_call} - {0}
        self.run = {count: jax.jit(run, static_argnums=5, donate_argnums=0).lower(self.state(), *example, count)
                    .compile() for count in counts}
        self.drain = {count: jax.jit(drain, static_argnums=5).lower(np.int32(0), *example, count).compile()
                      for count in counts}
        self.compile_seconds = time.perf_counter() - started

    def epoch_order(self) -> tuple[np.ndarray, np.int32]:
        """The order of the epoch's batches, and its rotation of the pairs."""
        return (self.rng.permutation(self.steps_per_epoch).astype(np.int32),
                np.int32(self.rng.integers(self.pairs)))

    def state(self) -> tuple[list[Any], ...]:
        model = self.model
        return ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                [v.value for v in model.optimizer.variables], [v.value for v in model.metrics_variables])

    def calls(self, epochs: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """(steps, arguments) of each compiled call."""
        for _ in range(epochs):
            batches, offset = self.epoch_order()
            for start in range(0, self.steps_per_epoch, self.steps_per_call):
                count = min(self.steps_per_call, self.steps_per_epoch - start)
                yield count, (self.data, batches, offset, np.int32(start))

    def train(self, epochs: int) -> None:
        state = self.state()
        for count, arguments in self.calls(epochs):
            state = self.run[count](state, *arguments)
        self.jax.block_until_ready(state)
        model = self.model
        variables = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
                     model.metrics_variables)
        for group, values in zip(variables, state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)

    def input_only(self, epochs: int) -> float:
        total = np.int32(0)
        for count, arguments in self.calls(epochs):
            total = self.drain[count](total, *arguments)
        return float(self.jax.block_until_ready(total))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", type=Path, help="an examples stage output folder (per_batch negatives)")
    parser.add_argument("--counts", type=Path, help="the vectorize stage's counts.npy (default: beside it)")
    parser.add_argument("--words", type=int, required=True, help="corpus words the examples came from")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-ns", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=0.025,
                        help="SGD's starting rate per pair (word2vec.c's 0.025 diverges with batches of 65536)")
    parser.add_argument("--steps-per-execution", type=int, default=64, help="training steps per compiled call")
    parser.add_argument("--bandwidth", type=float, default=3.35e12, help="device memory bandwidth, bytes/s")
    parser.add_argument("--input-only", action="store_true",
                        help="time the input alone (device slicing, and a Python generator), no model")
    parser.add_argument("--keras-fit", action="store_true",
                        help="with JAX too: model.fit on a Python generator instead of the device loop")
    args = parser.parse_args()

    from w2vpipe.backend import import_keras

    keras = import_keras()
    from w2vpipe.files import SHARD_GLOB
    from w2vpipe.model import build_word2vec
    from w2vpipe.skipgrams import load_examples_shard, noise_probabilities

    backend = keras.backend.backend()
    on_device = backend == "jax" and not args.keras_fit
    counts = np.load(args.counts or args.examples.parent / "vectorized" / "counts.npy")
    shards = [load_examples_shard(path) for path in sorted(args.examples.glob(SHARD_GLOB))]
    if not shards:
        sys.exit(f"no example shards in {args.examples}")
    targets = np.concatenate([shard.inputs for shard in shards])
    positives = np.concatenate([shard.outputs[:, :1] for shard in shards])
    steps = len(targets) // args.batch_size
    if steps == 0:
        sys.exit(f"{len(targets):,} pairs make no batch of {args.batch_size:,}")
    pairs = steps * args.batch_size  # per epoch: the remainder is left out (a different one each epoch)
    labels = np.zeros((args.batch_size, 1 + args.num_ns), dtype=np.float32)
    labels[:, 0] = 1
    bytes_per_pair = 2 * (2 + args.num_ns) * args.dim * 4  # target + 1 + k context rows, read and written
    bound = args.bandwidth / bytes_per_pair
    report: dict[str, Any] = {"backend": backend, "keras": keras.__version__}
    if backend == "jax":
        import jax

        report["jax"] = jax.__version__
        report["device"] = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    report.update({"pairs": pairs, "batch_size": args.batch_size, "epochs": args.epochs})

    model = build_word2vec(len(counts), args.dim, num_contexts=1 + args.num_ns, optimizer="sgd",
                           learning_rate=args.learning_rate, total_steps=steps * args.epochs,
                           num_ns_on_device=args.num_ns, noise=noise_probabilities("unigram", counts), seed=42,
                           jit_compile=True, steps_per_execution=min(args.steps_per_execution, steps))
    build_training_state(model, 1 + args.num_ns)

    if args.input_only:
        if backend == "jax":
            trainer = DeviceTrainer(model, targets, positives, labels, args.batch_size, args.steps_per_execution)
            started = time.perf_counter()
            trainer.input_only(args.epochs)
            report["device_input_pairs_per_s"] = pairs * args.epochs / (time.perf_counter() - started)
            to_device = jax.device_put
        else:
            to_device = keras.ops.convert_to_tensor
        # What `fit` gets from a generator: batches made on the host, each then moved to the device.
        batches = python_batches(targets, positives, labels, args.batch_size, steps)
        count = min(steps * args.epochs, 2000)
        started = time.perf_counter()
        for _ in range(count):
            (t, p), _ = next(batches)
            last = (to_device(t), to_device(p))
        float(keras.ops.sum(last[0]))  # waits for the last transfer
        report["python_generator_pairs_per_s"] = count * args.batch_size / (time.perf_counter() - started)
        report["bandwidth_bound_pairs_per_s"] = bound
        print(json.dumps(report, indent=2))
        return

    probe = (targets[: args.batch_size], positives[: args.batch_size])

    def probe_loss() -> float:  # summed loss per pair on the first batch, negatives drawn anew
        return float(model.compute_loss(y=labels, y_pred=model(probe, training=True))) / args.batch_size

    loss_before = probe_loss()
    if on_device:
        trainer = DeviceTrainer(model, targets, positives, labels, args.batch_size, args.steps_per_execution)
        report["input"] = "device (sliced inside the compiled loop)"
        report["compile_seconds"] = trainer.compile_seconds
        started = time.perf_counter()
        trainer.train(args.epochs)
        seconds = time.perf_counter() - started
    else:
        report["input"] = "python generator (model.fit)"
        batches = python_batches(targets, positives, labels, args.batch_size, steps)
        model.fit(batches, steps_per_epoch=min(steps, 2 * args.steps_per_execution), epochs=1, verbose=0)  # compile
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=args.epochs, verbose=2)
        seconds = time.perf_counter() - started
    pairs_per_second = pairs * args.epochs / seconds
    report.update({
        "seconds": seconds, "steps_per_s": steps * args.epochs / seconds,
        "pairs_per_s": pairs_per_second, "words_per_s": args.words * args.epochs * pairs / len(targets) / seconds,
        "bandwidth_bound_pairs_per_s": bound, "share_of_bound": pairs_per_second / bound,
        "probe_loss_per_pair_before": loss_before, "probe_loss_per_pair_after": probe_loss(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
