"""Training: a tf.data input pipeline feeding the Keras model, on every GPU TensorFlow sees.

The model and its training step are backend-agnostic Keras; only the input pipeline and the
device strategy here use TensorFlow.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from w2vpipe.backend import import_tensorflow
from w2vpipe.errors import PipelineError
from w2vpipe.files import SHARD_GLOB
from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import Examples, load_examples_shard

if TYPE_CHECKING:
    import tensorflow as tf

    from w2vpipe.model import Word2Vec

# Batches per compiled call: fewer Python round trips per epoch, same updates.
MAX_STEPS_PER_EXECUTION = 64
# A fixed prefetch, deep enough to cover loading the next shard (~0.1 s of steps): tf.data's
# AUTOTUNE took CPU from the training step on 2 cores (bench/input_vs_step.py: 1.6M vs 2.4M pairs/s
# with per-batch negatives), and 2 batches stalled at every shard (6M words, 1 epoch: 14.6 s vs 9.7 s).
PREFETCH_BATCHES = 64

EpochHook = Callable[[int, dict[str, float]], None]

# Inside a checkpoint folder: Keras's BackupAndRestore files, and the finished epochs' metrics.
BACKUP_DIR_NAME = "backup"
HISTORY_FILE_NAME = "history.json"


@dataclass(frozen=True)
class TrainResult:
    model: Word2Vec
    history: dict[str, list[float]]  # metric name -> one value per epoch
    steps_per_epoch: int
    fit_seconds: float  # the training loop's wall time, XLA compilation and callbacks included
    first_epoch: int = 0  # where this process began: a resumed training skips the finished epochs


def check_trainable(pairs: int, params: TrainParams) -> None:
    """Fail before TensorFlow loads when no full batch can be formed."""
    if pairs < params.batch_size:
        raise PipelineError(
            f"only {pairs} training pairs, fewer than train.batch_size={params.batch_size}: "
            f"lower train.batch_size or use a larger corpus"
        )


def example_shards(examples_dir: Path) -> list[Path]:
    shards = sorted(examples_dir.glob(SHARD_GLOB))
    if not shards:
        raise PipelineError(f"no example shards in {examples_dir}: run the examples stage first (dvc repro examples)")
    return shards


# A shard of examples: in memory, a shard directory, or a function giving each epoch's draw.
ExampleSource = Examples | Path | Callable[[int], Examples]


def load_examples(shard: ExampleSource, epoch: int = 0) -> Examples:
    if isinstance(shard, Examples):
        return shard
    if isinstance(shard, Path):
        return load_examples_shard(shard)
    return shard(epoch)


def batch_labels(batch_size: int, num_contexts: int) -> np.ndarray:
    """The same for every row: the true word first, then the negatives."""
    labels = np.zeros((batch_size, num_contexts), dtype=np.float32)
    labels[:, 0] = 1
    return labels


def make_dataset(shards: Sequence[ExampleSource], batch_size: int, steps_per_epoch: int, seed: int,
                 num_contexts: int, template: Examples, first_epoch: int = 0,
                 failures: list[Exception] | None = None) -> tf.data.Dataset:
    """Batches of ((inputs, outputs), labels), streamed shard by shard: memory holds one shard.
    A shard given as a function is asked for each epoch's examples (a new subsampling draw).

    Every epoch visits the shards in a new order and permutes each shard's rows whole: a larger
    shuffle than the tutorial's 10,000-pair buffer, and ~100x cheaper (tf.data's per-element
    shuffle runs at ~1M pairs/s on 2 cores, which would starve the training step). Each epoch is
    exactly `steps_per_epoch` batches, cut from its own pass (topped up from the pass's start when a
    redraw has fewer pairs), and its order is seeded by (seed, epoch): a training resumed at
    `first_epoch` sees what an unbroken one would have. Labels are the same for every row (the true
    context first, then the negatives), so they are built once rather than read from the shards.
    `template` is any shard's examples: the columns of every shard's. An error met while reading or
    drawing examples is also appended to `failures`: tf.data hands it on wrapped in its own.
    """
    tf = import_tensorflow()

    epochs = itertools.count(first_epoch)

    def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from epoch_rows(next(epochs))
        except Exception as error:
            if failures is not None:
                failures.append(error)
            raise

    def epoch_rows(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed, epoch])
        remaining = steps_per_epoch * batch_size
        while remaining:
            before = remaining
            for index in rng.permutation(len(shards)):
                examples = load_examples(shards[index], epoch)
                order = rng.permutation(len(examples))[:remaining]
                remaining -= len(order)
                yield examples.inputs[order], examples.outputs[order]
                if not remaining:
                    break
            if remaining == before:
                raise PipelineError(f"epoch {epoch + 1} drew no examples: the corpus is too small to train on")

    dataset = tf.data.Dataset.from_generator(rows, output_signature=(
        tf.TensorSpec(shape=(None, *template.inputs.shape[1:]), dtype=tf.int32),
        tf.TensorSpec(shape=(None, template.outputs.shape[1]), dtype=tf.int32)))
    labels = batch_labels(batch_size, num_contexts)
    # Endless: Keras counts epochs in steps, and each pass of the generator is the next epoch.
    return (dataset.repeat().rebatch(batch_size, drop_remainder=True)
            .map(lambda inputs, outputs: ((inputs, outputs), labels)).prefetch(PREFETCH_BATCHES))


def make_validation_dataset(shards: Sequence[ExampleSource], batch_size: int,
                            num_contexts: int) -> tf.data.Dataset | None:
    """The held-out examples, in memory (a small share of the corpus), in full batches of at most
    `batch_size`: the same examples and negatives every epoch. None when there are none."""
    tf = import_tensorflow()

    if not shards:
        return None
    held_out = [load_examples(shard) for shard in shards]
    inputs = np.concatenate([examples.inputs for examples in held_out])
    outputs = np.concatenate([examples.outputs for examples in held_out])
    if not len(inputs):
        return None
    batch = min(batch_size, len(inputs))
    labels = batch_labels(batch, num_contexts)
    return (tf.data.Dataset.from_tensor_slices((inputs, outputs)).batch(batch, drop_remainder=True)
            .map(lambda inputs, outputs: ((inputs, outputs), labels)).cache())


def resume_point(model: Word2Vec, checkpoint_dir: Path) -> int:
    """How many epochs the checkpoint in `checkpoint_dir` has finished (0 without one), its state
    loaded into `model`. A checkpoint cut short by a kill mid-write gives way to the one before it
    (Keras keeps both); with neither sound, training starts over, with a warning."""
    backup = checkpoint_dir / BACKUP_DIR_NAME
    latest = (backup / "latest.weights.h5", backup / "training_metadata.json")
    previous = tuple(path.with_name(f"{path.name}.bkp") for path in latest)
    for candidate in (latest, previous):
        if not all(path.is_file() for path in candidate):
            continue
        if candidate is previous:  # Keras loads only a file named *.weights.h5, and BackupAndRestore the latest
            for source, target in zip(previous, latest, strict=True):
                shutil.copyfile(source, target)
        weights, metadata = latest
        try:
            finished = int(json.loads(metadata.read_text())["epoch"])
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(weights)
        except (OSError, ValueError, KeyError) as error:
            print(f"warning: the checkpoint {candidate[0]} is damaged ({error})", flush=True)
            continue
        return finished
    if backup.exists():
        print(f"warning: no sound checkpoint in {backup}: training starts from epoch 1", flush=True)
        shutil.rmtree(backup, ignore_errors=True)
    return 0


def saved_history(checkpoint_dir: Path) -> dict[str, list[float]]:
    """The finished epochs' metrics that the checkpoint callbacks wrote, one list per metric."""
    history_file = checkpoint_dir / HISTORY_FILE_NAME
    epochs: list[dict[str, float]] = json.loads(history_file.read_text()) if history_file.is_file() else []
    return {name: [epoch[name] for epoch in epochs] for name in (epochs[0] if epochs else {})}


def checkpoint_callbacks(checkpoint_dir: Path) -> list[Any]:
    """Each finished epoch kept on disk: its metrics, then the model and optimizer state (Keras's
    `BackupAndRestore`, whose files it deletes when `fit` ends), so a training killed at any point
    resumes from its last finished epoch, with the same data order and draws as an unbroken one."""
    from w2vpipe.backend import import_keras
    from w2vpipe.files import atomic_file

    keras = import_keras()
    history_file = checkpoint_dir / HISTORY_FILE_NAME

    def keep_epoch(epoch: int, logs: dict[str, Any] | None) -> None:
        earlier = json.loads(history_file.read_text())[:epoch] if history_file.is_file() else []
        with atomic_file(history_file) as tmp:
            tmp.write_text(json.dumps([*earlier, {name: float(value) for name, value in (logs or {}).items()}]))

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return [keras.callbacks.LambdaCallback(on_epoch_end=keep_epoch),
            keras.callbacks.BackupAndRestore(str(checkpoint_dir / BACKUP_DIR_NAME), double_checkpoint=True)]


def gpu_count() -> int:
    tf = import_tensorflow()

    return len(tf.config.list_physical_devices("GPU"))


def device_strategy() -> tf.distribute.Strategy:
    """Mirror the model over several GPUs; otherwise TensorFlow's default (one GPU, or the CPU)."""
    tf = import_tensorflow()

    if gpu_count() > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train_word2vec(
    shards: Sequence[ExampleSource],
    pairs: int,
    vocab_size: int,
    params: TrainParams,
    num_ns: int,
    noise: np.ndarray | None = None,
    tensorboard_dir: Path | None = None,
    on_epoch_end: EpochHook | None = None,
    before_fit: Callable[[], object] | None = None,
    verbose: int = 2,
    validation: Sequence[ExampleSource] = (),
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train on example shards (files, or in memory) holding `pairs` pairs in all.

    With `noise` (probabilities over the vocabulary) the shards hold positives only and the model
    draws `num_ns` negatives per pair at each batch; without it they hold stored negatives.
    `validation` shards (held-out lines' examples, with their negatives) are scored after every
    epoch: `val_loss` and `val_accuracy`. `before_fit` runs once the model is built, before the
    first step. With `checkpoint_dir`, every finished epoch is kept there and a training killed
    earlier resumes from its last finished epoch (`on_epoch_end` is then called for the rest only).
    """
    from w2vpipe.backend import import_keras

    keras = import_keras()
    from w2vpipe.model import build_word2vec

    check_trainable(pairs, params)
    keras.utils.set_random_seed(params.seed)
    if params.mixed_precision and gpu_count():
        keras.mixed_precision.set_global_policy("mixed_float16")
    full_batches = pairs // params.batch_size
    steps_per_execution = min(MAX_STEPS_PER_EXECUTION, full_batches)
    # Keras runs whole executions, so an epoch is a whole number of them (its last batches topped up).
    steps_per_epoch = -(-full_batches // steps_per_execution) * steps_per_execution
    num_contexts = 1 + num_ns
    first = load_examples(shards[0])
    input_width = first.inputs.shape[1] if first.inputs.ndim == 2 else 0
    with device_strategy().scope():
        model = build_word2vec(
            vocab_size,
            params.embedding_dim,
            num_contexts=num_contexts,
            optimizer=params.optimizer,
            learning_rate=params.effective_learning_rate,
            total_steps=steps_per_epoch * params.epochs,
            num_ns_on_device=num_ns if noise is not None else 0,
            noise=noise,
            seed=params.seed,
            jit_compile=True,
            steps_per_execution=steps_per_execution,
            input_width=input_width,
            initializer=params.initializer,
        )
    first_epoch = 0
    callbacks: list[Any] = []
    if checkpoint_dir is not None:
        first_epoch = resume_point(model, checkpoint_dir)
        callbacks += checkpoint_callbacks(checkpoint_dir)
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})
            )
        )
    input_failures: list[Exception] = []
    dataset = make_dataset(list(shards), params.batch_size, steps_per_epoch, params.seed, num_contexts,
                           template=first, first_epoch=first_epoch, failures=input_failures)
    validation_dataset = make_validation_dataset(list(validation), params.batch_size, num_contexts)
    if before_fit is not None:
        before_fit()
    started = time.perf_counter()
    try:
        history = model.fit(dataset, epochs=params.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            verbose=verbose, shuffle=False, validation_data=validation_dataset)
    except Exception:
        if input_failures:  # the input's own error, not TensorFlow's wrapping of it
            raise input_failures[0] from None
        raise
    fit_seconds = time.perf_counter() - started
    return TrainResult(
        model=model,
        history=(saved_history(checkpoint_dir) if checkpoint_dir is not None
                 else {name: [float(v) for v in values] for name, values in history.history.items()}),
        steps_per_epoch=steps_per_epoch,
        fit_seconds=fit_seconds,
        first_epoch=first_epoch,
    )


def target_embedding_weights(model: Word2Vec) -> np.ndarray:
    return np.asarray(model.target_embedding.embeddings)
