"""Training: epochs of example shards through one compiled loop of steps, on the device.

word2vec.c's recipe (`train.optimizer: sgd`, the default) runs one compiled call of many steps per
block of each shard's examples (permuted on the host), drawing each batch's negatives inside: on the
CPU's cores `w2vpipe.cpu_sgd` (numba), on accelerators and TensorFlow `w2vpipe.sgd`'s keras.ops loop,
the same steps (`w2vpipe.distributed` picks the placement). The tutorial's recipe (Adam over a
softmax) runs Keras's `model.fit` on a tf.data pipeline (TensorFlow only). Both keep the same epochs,
callbacks and metrics; each checkpoints what it needs to resume (the SGD loop its tables, `model.fit`
Keras's model and optimizer state).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from w2vpipe.backend import import_keras, import_tensorflow
from w2vpipe.distributed import Placement
from w2vpipe.errors import PipelineError, disk_full_as_one_line
from w2vpipe.files import SHARD_GLOB, atomic_dir, atomic_file
from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import Examples, load_examples_shard
from w2vpipe.tables import StepConfig, aligned_table, initial_tables, noise_table

if TYPE_CHECKING:
    import tensorflow as tf

    from w2vpipe.model import Word2Vec

# Batches per compiled call: fewer Python round trips per epoch, same updates.
MAX_STEPS_PER_EXECUTION = 64
# A fixed prefetch, deep enough to cover loading the next shard (~0.1 s of steps): tf.data's
# AUTOTUNE took CPU from the training step on 2 cores (measured: 1.6M vs 2.4M pairs/s
# with per-batch negatives), and 2 batches stalled at every shard (6M words, 1 epoch: 14.6 s vs 9.7 s).
PREFETCH_BATCHES = 64

PROGRESS_SECONDS = 5.0

EpochHook = Callable[[int, dict[str, float]], None]

# Inside a checkpoint folder: the finished epochs' metrics, and the tables after an epoch (word2vec.c's SGD
# loop; tables-000003: after 3 epochs) or Keras's BackupAndRestore files (model.fit).
HISTORY_FILE_NAME = "history.json"
TABLES_PREFIX = "tables-"
TABLE_NAMES = ("target", "context")
BACKUP_DIR_NAME = "backup"


class EpochHooks:
    """What runs around the epochs (metrics to disk and MLflow, TensorBoard's curves): Keras's callback methods
    without Keras, which the CPU loop never imports (two seconds of every train stage); `model.fit` gets them
    through `keras_callback`."""

    def on_train_begin(self) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_train_end(self) -> None:
        pass


class AfterEpoch(EpochHooks):
    def __init__(self, hook: EpochHook) -> None:
        self.hook = hook

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.hook(epoch, logs)


def keras_callback(hooks: EpochHooks) -> Any:
    return import_keras().callbacks.LambdaCallback(
        on_train_begin=lambda logs: hooks.on_train_begin(),
        on_epoch_end=lambda epoch, logs: hooks.on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()}),
        on_train_end=lambda logs: hooks.on_train_end())


@dataclass(frozen=True)
class TrainResult:
    tables: tuple[np.ndarray, np.ndarray]  # (target, context): the word vectors users keep, and the output vectors
    history: dict[str, list[float]]  # metric name -> one value per epoch
    steps_per_epoch: int
    fit_seconds: float  # the training loop's wall time, XLA compilation and callbacks included
    first_epoch: int = 0  # where this process began: a resumed training skips the finished epochs


class TrainingDiverged(PipelineError):
    """The loss or the tables turned NaN or infinite: nothing of this training is worth keeping, its
    checkpoints included (a resumed training would diverge again)."""


def check_epoch(epoch: int, logs: dict[str, float], learning_rate: float) -> None:
    """Stop at the end of the first epoch whose loss (or held-out loss) is NaN or infinite: SGD does not
    come back from it, and the epoch's sums are at hand, so the check costs nothing."""
    if not all(math.isfinite(value) for value in logs.values()):
        losses = ", ".join(f"{name} {logs[name]:.4g}" for name in ("loss", "val_loss") if name in logs)
        raise TrainingDiverged(f"training diverged at epoch {epoch + 1} ({losses}): lower train.learning_rate "
                               f"(now {learning_rate:g}) and rerun")


def check_tables(tables: Sequence[Any], epochs: int, learning_rate: float) -> None:
    """Once, after the last epoch: every value of both tables (target, context) finite (a step can overflow
    a row that no loss of the epoch showed)."""
    for name, table in zip(("target", "context"), tables, strict=True):
        broken = ~np.isfinite(np.asarray(table)).all(axis=1)
        if broken.any():
            raise TrainingDiverged(f"training diverged: after epoch {epochs}, {np.count_nonzero(broken):,} rows of the "
                                   f"{name} embedding are NaN or infinite: lower train.learning_rate (now "
                                   f"{learning_rate:g}) and rerun")


def check_trainable(pairs: int, params: TrainParams) -> None:
    """Fail before TensorFlow loads when no full batch can be formed, or the recipe cannot run."""
    if params.optimizer != "sgd" and params.shared_negatives:
        raise PipelineError(f"train.optimizer {params.optimizer} trains with Keras's model.fit, each example with "
                            f"its own negatives: set train.shared_negatives: 0, or train.optimizer: sgd")
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


def epoch_rows(shards: Sequence[ExampleSource], rows: int, seed: int,
               epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Epoch `epoch`'s `rows` examples, a shard's worth at a time: the shards in a new order, each
    permuted whole: a larger shuffle than the tutorial's 10,000-pair buffer, and ~100x cheaper than
    tf.data's per-element shuffle. Cut from the epoch's own pass (topped up from the pass's start when a
    redraw has fewer examples), seeded by (seed, epoch): a resumed training sees what an unbroken one would."""
    rng = np.random.default_rng([seed, epoch])
    remaining = rows
    while remaining:
        before = remaining
        for index in rng.permutation(len(shards)):
            permuted = permuted_rows(load_examples(shards[index], epoch), rng, remaining)
            remaining -= len(permuted[0])
            yield permuted
            if not remaining:
                break
        if remaining == before:
            raise PipelineError(f"epoch {epoch + 1} drew no examples: the corpus is too small to train on")


def permuted_rows(examples: Examples, rng: np.random.Generator, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` rows of `rng.permutation(len(examples))`'s order: the same order, drawn into an int32
    index (half of the int64 one's memory) that is freed, with the shard's own draw, before the caller trains
    on the permuted copy."""
    order = np.arange(len(examples), dtype=np.int32 if len(examples) < 2 ** 31 else np.int64)
    rng.shuffle(order)
    order = order[:limit]
    return examples.inputs[order], examples.outputs[order]


def epoch_blocks(shards: Sequence[ExampleSource], blocks: int, steps: int, batch_size: int, seed: int,
                 epoch: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """`epoch_rows` as blocks of `steps` batches (one compiled call's), a shard's list at a time: (inputs,
    outputs) shaped (steps, batch_size[, columns]). Blocks are views of the permuted shard, not copies; the
    rows left over at a shard's end are copied, and lead the next shard's blocks."""
    block_rows = steps * batch_size

    def as_block(rows: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return tuple(column.reshape(steps, batch_size, *column.shape[1:]) for column in rows)  # type: ignore[return-value]

    leftover: tuple[np.ndarray, np.ndarray] | None = None
    for inputs, outputs in epoch_rows(shards, blocks * block_rows, seed, epoch):
        shard_blocks, start = [], 0
        if leftover is not None:
            start = min(block_rows - len(leftover[0]), len(inputs))
            leftover = (np.concatenate([leftover[0], inputs[:start]]), np.concatenate([leftover[1], outputs[:start]]))
            if len(leftover[0]) == block_rows:
                shard_blocks.append(as_block(leftover))
                leftover = None
        end = start + (len(inputs) - start) // block_rows * block_rows
        shard_blocks += [as_block((inputs[at:at + block_rows], outputs[at:at + block_rows]))
                         for at in range(start, end, block_rows)]
        if end < len(inputs):
            leftover = (inputs[end:].copy(), outputs[end:].copy())
        if shard_blocks:
            yield shard_blocks


Item = TypeVar("Item")


def prefetched(items: Iterator[Item]) -> Iterator[Item]:
    """`items`, each made in a thread while the caller uses the one before: the host draws and permutes the
    next shard while the device trains on this one."""
    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="next-shard") as pool:
        ahead = pool.submit(next, items, done)
        while (item := ahead.result()) is not done:
            ahead = pool.submit(next, items, done)
            yield item  # type: ignore[misc]


def one_epoch(shards: Iterator[list[Item]], blocks: int) -> Iterator[list[Item]]:
    """One epoch's shards (each a list of blocks) from a stream of epochs: `blocks` blocks in all. The
    stream carries no end-of-epoch marker, so the thread drawing it starts on the next epoch's first shard
    as soon as this epoch's last one is taken."""
    while blocks > 0:
        shard = next(shards)
        blocks -= len(shard)
        yield shard


def make_dataset(shards: Sequence[ExampleSource], batch_size: int, steps_per_epoch: int, seed: int,
                 num_contexts: int, template: Examples, first_epoch: int = 0,
                 failures: list[Exception] | None = None) -> tf.data.Dataset:
    """`model.fit`'s input: batches of ((inputs, outputs), labels) of `epoch_rows`, streamed shard by
    shard (memory holds one shard), each epoch exactly `steps_per_epoch` batches. A shard given as a
    function is asked for each epoch's examples (a new subsampling draw). Labels are the same for
    every row (the true context first, then the negatives), so they are built once.
    `template` is any shard's examples: the columns of every shard's. An error met while reading or
    drawing examples is also appended to `failures`: tf.data hands it on wrapped in its own.
    """
    tf = import_tensorflow()

    epochs = itertools.count(first_epoch)

    def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from epoch_rows(shards, steps_per_epoch * batch_size, seed, next(epochs))
        except Exception as error:
            if failures is not None:
                failures.append(error)
            raise

    dataset = tf.data.Dataset.from_generator(rows, output_signature=(
        tf.TensorSpec(shape=(None, *template.inputs.shape[1:]), dtype=tf.int32),
        tf.TensorSpec(shape=(None, template.outputs.shape[1]), dtype=tf.int32)))
    labels = batch_labels(batch_size, num_contexts)
    # Endless: Keras counts epochs in steps, and each pass of the generator is the next epoch.
    return (dataset.repeat().rebatch(batch_size, drop_remainder=True)
            .map(lambda inputs, outputs: ((inputs, outputs), labels)).prefetch(PREFETCH_BATCHES))


def held_out_examples(shards: Sequence[ExampleSource]) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out examples (inputs, outputs with their negatives), in memory: a small share of the
    corpus, scored after every epoch. None when there are none."""
    held_out = [load_examples(shard) for shard in shards]
    if not held_out or not sum(len(examples) for examples in held_out):
        return None
    return (np.concatenate([examples.inputs for examples in held_out]),
            np.concatenate([examples.outputs for examples in held_out]))


def make_validation_dataset(shards: Sequence[ExampleSource], batch_size: int,
                            num_contexts: int) -> tf.data.Dataset | None:
    """`model.fit`'s held-out examples in full batches of at most `batch_size`."""
    tf = import_tensorflow()

    held_out = held_out_examples(shards)
    if held_out is None:
        return None
    batch = min(batch_size, len(held_out[0]))
    labels = batch_labels(batch, num_contexts)
    return (tf.data.Dataset.from_tensor_slices(held_out).batch(batch, drop_remainder=True)
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


def keep_epoch(checkpoint_dir: Path, epoch: int, logs: dict[str, Any] | None) -> None:
    """A finished epoch's metrics kept on disk (`saved_history`), those of epochs after it dropped: a
    resumed training rewrites the epochs it trains again."""
    history_file = checkpoint_dir / HISTORY_FILE_NAME
    earlier = json.loads(history_file.read_text())[:epoch] if history_file.is_file() else []
    with atomic_file(history_file) as tmp:
        tmp.write_text(json.dumps([*earlier, {name: float(value) for name, value in (logs or {}).items()}]))


def save_tables(checkpoint_dir: Path, epochs_done: int, tables: Sequence[np.ndarray]) -> None:
    """word2vec.c's SGD loop's checkpoint: the two tables after `epochs_done` epochs (their metrics already
    kept: `keep_epoch`), a folder written whole (`atomic_dir`), the one before it kept in case this one is
    damaged later. Its step count, draws and rates follow from the epoch: nothing else to keep."""
    with atomic_dir(checkpoint_dir / f"{TABLES_PREFIX}{epochs_done:06d}") as tmp:
        for name, table in zip(TABLE_NAMES, tables, strict=True):
            np.save(tmp / f"{name}.npy", table)
    for older in sorted(checkpoint_dir.glob(f"{TABLES_PREFIX}*"))[:-2]:
        shutil.rmtree(older, ignore_errors=True)


def resume_tables(checkpoint_dir: Path, shape: tuple[int, int]) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
    """(epochs done, tables) of the newest sound table checkpoint in `checkpoint_dir`; (0, None) without one
    (with a warning where one was damaged: training starts over)."""
    folders = sorted(checkpoint_dir.glob(f"{TABLES_PREFIX}*"), reverse=True)
    for folder in folders:
        try:
            saved = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in TABLE_NAMES]
        except (OSError, ValueError) as error:
            print(f"warning: the checkpoint {folder} is damaged ({error})", flush=True)
            continue
        if all(table.shape == shape and table.dtype == np.float32 for table in saved):
            tables = tuple(aligned_table(shape) for _ in saved)
            for table, values in zip(tables, saved, strict=True):
                table[:] = values
            return int(folder.name.removeprefix(TABLES_PREFIX)), tables  # type: ignore[return-value]
        print(f"warning: the checkpoint {folder} holds tables of another shape than {shape}", flush=True)
    if folders:
        print(f"warning: no sound checkpoint in {checkpoint_dir}: training starts from epoch 1", flush=True)
    return 0, None


def checkpoint_callbacks(checkpoint_dir: Path) -> list[Any]:
    """For `model.fit`: each finished epoch kept on disk: its metrics, then the model and optimizer state
    (Keras's `BackupAndRestore`, whose files it deletes when `fit` ends), so a training killed at any point
    resumes from its last finished epoch, with the same data order and draws as an unbroken one."""
    keras = import_keras()

    class Backup(keras.callbacks.BackupAndRestore):
        """Keras's checkpoints, the weights' HDF5 file made in memory and written whole by Python, atomically:
        HDF5 that meets a full disk mid-write leaves its file open, and its failing close, as late as the
        interpreter's exit, crashed the process (measured on a full tmpfs). The files are Keras's own, which
        `resume_point` loads."""

        def _save_model(self) -> None:
            from keras.src.saving import saving_lib

            weights = io.BytesIO()
            store = saving_lib.H5IOStore(weights, mode="w")
            saving_lib._save_state(self.model, weights_store=store, assets_store=None, inner_path="",
                                   visited_saveables=set())
            store.close()
            Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
            for path in (self._weights_path, self._training_metadata_path):
                if Path(path).is_file():  # the previous epoch's, in case this one is cut short (double_checkpoint)
                    with atomic_file(Path(f"{path}.bkp")) as tmp:
                        shutil.copyfile(path, tmp)
            with atomic_file(Path(self._weights_path)) as tmp:
                tmp.write_bytes(weights.getbuffer())
            with atomic_file(Path(self._training_metadata_path)) as tmp:
                tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: keep_epoch(checkpoint_dir, epoch, logs)),
            Backup(str(checkpoint_dir / BACKUP_DIR_NAME), double_checkpoint=True)]


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
    before_checkpoint: Callable[[], object] | None = None,
    verbose: int = 2,
    validation: Sequence[ExampleSource] = (),
    checkpoint_dir: Path | None = None,
    placement: Placement | None = None,
) -> TrainResult:
    """Train on example shards (files, or in memory) holding `pairs` pairs in all.

    With `noise` (probabilities over the vocabulary) the shards hold positives only and `num_ns`
    negatives per pair are drawn at each batch; without it they hold stored negatives.
    `validation` shards (held-out lines' examples, with their negatives) are scored after every
    epoch: `val_loss` and `val_accuracy`. `before_checkpoint` runs once, before the first
    checkpoint is kept (the SGD loop: after its first epoch, so that it overlaps training; `model.fit`: before
    it starts). With `checkpoint_dir`, every finished epoch is kept there and a training killed
    earlier resumes from its last finished epoch (`on_epoch_end` is then called for the rest only).
    `placement` spreads each batch over a process group's devices (`w2vpipe.distributed`).
    """
    check_trainable(pairs, params)
    on_device_loop = params.optimizer == "sgd"
    if not on_device_loop:
        keras = import_keras()
        if keras.backend.backend() != "tensorflow":
            raise PipelineError(f"train.optimizer {params.optimizer} trains with model.fit on TensorFlow, but Keras "
                                f"runs on {keras.backend.backend()} here: set KERAS_BACKEND=tensorflow")
        keras.utils.set_random_seed(params.seed)  # whatever in model.fit draws from a global seed
        if params.mixed_precision and gpu_count():
            keras.mixed_precision.set_global_policy("mixed_float16")
    full_batches = pairs // params.batch_size
    placement = placement or Placement()
    # An epoch is a whole number of compiled calls of at most MAX_STEPS_PER_EXECUTION steps, as few and as
    # even as can be: the fewest batches are left out (under `calls`; each epoch leaves out others, at
    # random). Topping up instead would draw a shard's examples twice in an epoch.
    calls = -(-full_batches // MAX_STEPS_PER_EXECUTION)
    steps_per_execution = max(1, full_batches // calls)
    steps_per_epoch = steps_per_execution * calls
    num_contexts = 1 + num_ns
    first_epoch = 0
    hooks: list[EpochHooks] = []
    keras_callbacks: list[Any] = []  # model.fit's own
    if on_device_loop:  # the tables as numpy arrays, trained in place
        tables = None
        if checkpoint_dir is not None:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            first_epoch, tables = resume_tables(checkpoint_dir, (vocab_size, params.embedding_dim))
        if tables is None:
            tables = initial_tables(vocab_size, params.embedding_dim, params.initializer, params.seed)
    else:
        from w2vpipe.model import build_word2vec

        first = load_examples(shards[0])
        input_width = first.inputs.shape[1] if first.inputs.ndim == 2 else 0
        with device_strategy().scope():
            model = build_word2vec(vocab_size, params.embedding_dim, num_contexts, input_width, seed=params.seed,
                                   initializer=params.initializer, num_ns_on_device=num_ns if noise is not None else 0,
                                   noise=noise, adam_learning_rate=params.effective_learning_rate, jit_compile=True,
                                   steps_per_execution=steps_per_execution)
        if checkpoint_dir is not None:
            first_epoch = resume_point(model, checkpoint_dir)
            keras_callbacks += checkpoint_callbacks(checkpoint_dir)
    if tensorboard_dir is not None:
        hooks += tensorboard_hooks(tensorboard_dir)
    if on_epoch_end is not None:
        hooks.append(AfterEpoch(on_epoch_end))
    run = Run(shards=list(shards), validation=list(validation), params=params, steps_per_epoch=steps_per_epoch,
              steps_per_call=steps_per_execution, first_epoch=first_epoch, hooks=hooks, verbose=verbose,
              placement=placement, checkpoint_dir=checkpoint_dir, before_checkpoint=before_checkpoint)
    started = time.perf_counter()
    if on_device_loop:
        history, tables = train_on_device(tables, run, noise=noise, num_ns=num_ns if noise is not None else 0)
        fit_seconds = time.perf_counter() - started
    else:
        if before_checkpoint is not None:
            before_checkpoint()
        history = fit_with_keras(model, run, keras_callbacks, template=first, num_contexts=num_contexts)
        fit_seconds = time.perf_counter() - started
        tables = (np.asarray(model.target_embedding.embeddings), np.asarray(model.context_embedding.embeddings))
    check_tables(tables, params.epochs, params.effective_learning_rate)
    return TrainResult(
        tables=tables,
        history=saved_history(checkpoint_dir) if checkpoint_dir is not None else history,
        steps_per_epoch=steps_per_epoch,
        fit_seconds=fit_seconds,
        first_epoch=first_epoch,
    )


class Progress:
    """A line every PROGRESS_SECONDS inside an epoch: the share done, pairs/s and the time left (gensim logs
    every second; a 10^8-word epoch is many minutes)."""

    def __init__(self, label: str, steps: int, batch_size: int, enabled: bool = True) -> None:
        self.label, self.steps, self.batch_size, self.enabled = label, steps, batch_size, enabled
        self.done = 0
        self.started = self.last = time.perf_counter()

    def update(self, steps: int) -> None:
        self.done += steps
        now = time.perf_counter()
        if not self.enabled or now - self.last < PROGRESS_SECONDS or self.done >= self.steps:
            return
        self.last = now
        rate = self.done / (now - self.started)
        print(f"{self.label}: {self.done / self.steps:.0%} of {self.steps * self.batch_size:,} pairs, "
              f"{rate * self.batch_size:,.0f} pairs/s, {(self.steps - self.done) / rate:.0f} s left", flush=True)


@dataclass(frozen=True)
class Run:
    """What a training loop needs besides the model."""

    shards: list[ExampleSource]
    validation: list[ExampleSource]
    params: TrainParams
    steps_per_epoch: int
    steps_per_call: int  # steps of one compiled call
    first_epoch: int
    hooks: list[EpochHooks]
    verbose: int
    placement: Placement
    checkpoint_dir: Path | None = None  # word2vec.c's SGD loop keeps its metrics there, and its tables but the last
    before_checkpoint: Callable[[], object] | None = None


def train_on_device(tables: tuple[np.ndarray, np.ndarray], run: Run, noise: np.ndarray | None,
                    num_ns: int) -> tuple[dict[str, list[float]], tuple[np.ndarray, np.ndarray]]:
    """word2vec.c's SGD through the placement's compiled loop, from `tables` (target, context: handed over,
    trained in place on the CPU's cores) to (history, the trained tables): each shard's blocks go to the
    device at once (the next shard, of this epoch or the next, is drawn on the host meanwhile), then one
    call per block; the loss and accuracy are summed on the device and read once per epoch, when the
    callbacks run."""
    params = run.params
    place = run.placement
    if params.batch_size % place.devices:
        raise PipelineError(f"train.batch_size={params.batch_size} does not split over {place.devices} devices: "
                            f"make it a multiple of {place.devices}")
    config = StepConfig(batch_size=params.batch_size, steps_per_call=run.steps_per_call, num_ns=num_ns,
                            shared_negatives=params.shared_negatives, learning_rate=params.effective_learning_rate,
                            total_steps=run.steps_per_epoch * params.epochs, vocab_size=len(tables[0]),
                            seed=params.seed, hogwild=params.updates == "hogwild")
    train_call = place.train_call(config)
    noise_on_device = place.replicated(noise_table(noise) if noise is not None else np.zeros(1, np.int32))
    on_device = tuple(place.replicated(table) for table in tables)  # donated to each call
    del tables  # on the CPU's cores, `on_device` is the same memory
    held_out = held_out_examples(run.validation)
    evaluate = None
    if held_out is not None:
        batch = min(params.batch_size, len(held_out[0]))
        batches = len(held_out[0]) // batch
        evaluate = place.evaluate_call(batches)
        held_out_on_device = tuple(place.replicated(column[: batches * batch].reshape(batches, batch,
                                                                                       *column.shape[1:]))
                                   for column in held_out)
    history: dict[str, list[float]] = {}
    blocks = run.steps_per_epoch // run.steps_per_call

    def every_epoch() -> Iterator[list[tuple[Any, Any]]]:
        # Each shard's blocks on the device(s), epoch after epoch, so that even a one-shard corpus draws its next
        # epoch while this one trains.
        for epoch in range(run.first_epoch, params.epochs):
            for shard_blocks in epoch_blocks(run.shards, blocks, run.steps_per_call, params.batch_size, params.seed,
                                             epoch):
                yield [(place.batches(inputs), place.batches(outputs)) for inputs, outputs in shard_blocks]

    # The callbacks (metrics to disk and MLflow, TensorBoard) run in a thread, in order, while the device
    # trains on the next epoch; the tables' checkpoint is written before the next epoch changes them.
    with contextlib.closing(prefetched(every_epoch())) as shards_ahead, \
            ThreadPoolExecutor(1, thread_name_prefix="epoch-end") as after_epoch:
        callbacks_done = after_epoch.submit(lambda: [hooks.on_train_begin() for hooks in run.hooks])
        for epoch in range(run.first_epoch, params.epochs):
            started = time.perf_counter()
            step = epoch * run.steps_per_epoch
            sums = []
            progress = Progress(f"Epoch {epoch + 1}/{params.epochs}", run.steps_per_epoch, params.batch_size,
                                enabled=bool(run.verbose))
            for shard_blocks in one_epoch(shards_ahead, blocks):
                for inputs, outputs in shard_blocks:
                    on_device, loss, correct = train_call(on_device, noise_on_device, inputs, outputs, step)
                    sums.append((loss, correct))
                    step += run.steps_per_call
                    progress.update(run.steps_per_call)
            examples = run.steps_per_epoch * params.batch_size
            logs = {"loss": sum(float(place.to_host(loss)) for loss, _ in sums) / run.steps_per_epoch,
                    "accuracy": sum(float(place.to_host(correct)) for _, correct in sums) / examples}
            if evaluate is not None:
                loss, correct = evaluate(on_device, *held_out_on_device)
                logs.update(val_loss=float(place.to_host(loss)) / batches,
                            val_accuracy=float(place.to_host(correct)) / (batches * batch))
            check_epoch(epoch, logs, params.effective_learning_rate)  # before this epoch is checkpointed
            callbacks_done.result()  # the last epoch's, and any error they raised
            if run.checkpoint_dir is not None:
                if epoch == run.first_epoch and run.before_checkpoint is not None:
                    run.before_checkpoint()
                keep_epoch(run.checkpoint_dir, epoch, logs)
                if epoch + 1 < params.epochs:
                    save_tables(run.checkpoint_dir, epoch + 1, [place.to_host(table) for table in on_device])
            seconds = time.perf_counter() - started
            if run.verbose:
                print(f"Epoch {epoch + 1}/{params.epochs} - {seconds:.2f}s ({examples / seconds:,.0f} pairs/s) - "
                      + " - ".join(f"{name}: {value:.4f}" for name, value in logs.items()), flush=True)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            callbacks_done = after_epoch.submit(lambda epoch=epoch, logs=logs: [
                hooks.on_epoch_end(epoch, logs) for hooks in run.hooks])
        callbacks_done.result()
    for hooks in run.hooks:
        hooks.on_train_end()
    if run.checkpoint_dir is not None:  # done: the model is what a rerun would start from
        for folder in run.checkpoint_dir.glob(f"{TABLES_PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)
    return history, tuple(place.to_host(table) for table in on_device)  # type: ignore[return-value]


def fit_with_keras(model: Word2Vec, run: Run, keras_callbacks: list[Any], template: Examples,
                   num_contexts: int) -> dict[str, list[float]]:
    """The tutorial's recipe (Adam, softmax cross-entropy): Keras's `model.fit` on a tf.data pipeline, with the
    run's hooks after `keras_callbacks` (checkpoints)."""
    params = run.params
    input_failures: list[Exception] = []
    dataset = make_dataset(run.shards, params.batch_size, run.steps_per_epoch, params.seed, num_contexts,
                           template=template, first_epoch=run.first_epoch, failures=input_failures)
    validation_dataset = make_validation_dataset(run.validation, params.batch_size, num_contexts)
    # First, so that a diverged epoch is never checkpointed.
    diverged = import_keras().callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: check_epoch(
        epoch, {name: float(value) for name, value in (logs or {}).items()}, params.effective_learning_rate))
    try:
        history = model.fit(dataset, epochs=params.epochs, steps_per_epoch=run.steps_per_epoch,
                            callbacks=[diverged, *keras_callbacks, *map(keras_callback, run.hooks)],
                            verbose=run.verbose, shuffle=False,
                            validation_data=validation_dataset)
    except Exception:
        if input_failures:  # the input's own error, not TensorFlow's wrapping of it
            raise input_failures[0] from None
        raise
    return {name: [float(v) for v in values] for name, values in history.history.items()}


def tensorboard_hooks(log_dir: Path) -> list[EpochHooks]:
    """The per-epoch curves in TensorBoard's format, as Keras's TensorBoard callback lays them out
    (train/ and validation/, `epoch_loss`...), written with TensorBoard's record writer to plain files:
    Keras's callback, and TensorBoard's own event writer, load TensorFlow (seconds, under any backend)
    when it is installed. None without TensorBoard (a GPU machine with JAX alone), with a note."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        print(f"note: no TensorBoard logs in {log_dir}: TensorBoard is not installed", flush=True)
        return []

    class EpochScalars(EpochHooks):
        def on_train_begin(self) -> None:
            self.files, self.writers = [], {}
            with disk_full_as_one_line(log_dir):
                for split in ("train", "validation"):
                    (log_dir / split).mkdir(parents=True, exist_ok=True)
                    name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}"
                    events = (log_dir / split / name).open("wb")
                    self.files.append(events)
                    self.writers[split] = RecordWriter(events)
                    self.write(split, Event(wall_time=time.time(), file_version="brain.Event:2"))

        def write(self, split: str, event: Any) -> None:
            self.writers[split].write(event.SerializeToString())

        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            with disk_full_as_one_line(log_dir):
                for name, value in logs.items():
                    split, tag = ("validation", name.removeprefix("val_")) if name.startswith("val_") else ("train",
                                                                                                          name)
                    summary = Summary(value=[Summary.Value(tag=f"epoch_{tag}", simple_value=float(value))])
                    self.write(split, Event(wall_time=time.time(), step=epoch, summary=summary))
                for events in self.files:
                    events.flush()

        def on_train_end(self) -> None:
            for events in self.files:
                events.close()

    return [EpochScalars()]
