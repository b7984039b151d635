"""Training: a tf.data input pipeline feeding the Keras model, on every GPU TensorFlow sees.

The model and its training step are backend-agnostic Keras; only the input pipeline and the
device strategy here use TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import Examples

if TYPE_CHECKING:
    import tensorflow as tf

    from w2vpipe.model import Word2Vec

SHARD_GLOB = "shard-*.npz"
STATS_FILE = "stats.json"
# Batches per compiled call: fewer Python round trips per epoch, same updates.
MAX_STEPS_PER_EXECUTION = 64

EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    model: Word2Vec
    history: dict[str, list[float]]  # metric name -> one value per epoch
    steps_per_epoch: int


def read_example_stats(examples_dir: Path) -> dict[str, int]:
    stats_path = examples_dir / STATS_FILE
    if not stats_path.is_file():
        raise PipelineError(f"{stats_path} not found: run the examples stage first (dvc repro examples)")
    return json.loads(stats_path.read_text())


def check_trainable(pairs: int, params: TrainParams) -> None:
    """Fail before TensorFlow loads when no full batch can be formed."""
    if pairs < params.batch_size:
        raise PipelineError(
            f"only {pairs} training pairs, fewer than train.batch_size={params.batch_size}: "
            f"lower train.batch_size or use a larger corpus"
        )


def load_examples(examples_dir: Path) -> Examples:
    shards = sorted(examples_dir.glob(SHARD_GLOB))
    if not shards:
        raise PipelineError(f"no example shards in {examples_dir}: run the examples stage first (dvc repro examples)")
    parts = [np.load(shard) for shard in shards]
    return Examples(
        targets=np.concatenate([part["targets"] for part in parts]),
        contexts=np.concatenate([part["contexts"] for part in parts]),
        labels=np.concatenate([part["labels"] for part in parts]),
    )


def make_dataset(examples: Examples, batch_size: int, buffer_size: int, seed: int) -> tf.data.Dataset:
    """The tutorial's input pipeline, with the cache before the shuffle so each epoch reshuffles."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(((examples.targets, examples.contexts), examples.labels))
    dataset = dataset.cache().shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def device_strategy() -> tf.distribute.Strategy:
    """Mirror the model over several GPUs; otherwise TensorFlow's default (one GPU, or the CPU)."""
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train_word2vec(
    examples: Examples,
    vocab_size: int,
    params: TrainParams,
    tensorboard_dir: Path | None = None,
    on_epoch_end: EpochHook | None = None,
    before_fit: Callable[[], object] | None = None,
    verbose: int = 2,
) -> TrainResult:
    """Train the tutorial's model; `before_fit` runs once the model is built, before the first step."""
    from w2vpipe.backend import import_keras

    keras = import_keras()
    from w2vpipe.model import build_word2vec

    check_trainable(len(examples), params)
    keras.utils.set_random_seed(params.seed)
    steps_per_epoch = len(examples) // params.batch_size
    with device_strategy().scope():
        model = build_word2vec(
            vocab_size,
            params.embedding_dim,
            num_contexts=examples.contexts.shape[1],
            learning_rate=params.learning_rate,
            jit_compile=True,
            steps_per_execution=min(MAX_STEPS_PER_EXECUTION, steps_per_epoch),
        )
    callbacks: list[Any] = []
    if tensorboard_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir)))
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})
            )
        )
    dataset = make_dataset(examples, params.batch_size, params.buffer_size, params.seed)
    if before_fit is not None:
        before_fit()
    history = model.fit(dataset, epochs=params.epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    return TrainResult(
        model=model,
        history={name: [float(v) for v in values] for name, values in history.history.items()},
        steps_per_epoch=steps_per_epoch,
    )


def target_embedding_weights(model: Word2Vec) -> np.ndarray:
    return np.asarray(model.target_embedding.embeddings)
