"""The tutorial's skip-gram model, and CBOW, in backend-agnostic Keras 3 (`keras.ops` and `keras.random` only)."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from w2vpipe.backend import import_keras, tensorflow_unseen
from w2vpipe.files import atomic_file

import_keras()  # before the first `import keras`, which it makes cheaper
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

TARGET_EMBEDDING = "w2v_embedding"
CONTEXT_EMBEDDING = "context_embedding"


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def noise_table_size(vocab_size: int) -> int:
    """Entries in the noise table: at least 2^16 and 16 per word, so every word with a probability
    above ~1/(16 * vocab_size) gets its share. Small enough to stay in cache: a 2^20-entry table
    made the per-batch step 2.2x slower on 2 CPU cores (1.4M vs 3.1M pairs/s)."""
    return max(1 << 16, 16 * vocab_size)


NOISE_TABLE_CHUNK = 1 << 22


def noise_table(probabilities: np.ndarray) -> np.ndarray:
    """word2vec.c's unigram table: word ids laid out in proportion to their noise probability, so a
    draw is one uniform index and one lookup (a binary search per draw is ~10x slower under XLA)."""
    size = noise_table_size(len(probabilities))
    cdf = np.cumsum(probabilities, dtype=np.float64)
    table = np.empty(size, np.int32)
    for start in range(0, size, NOISE_TABLE_CHUNK):  # float64 quantiles a chunk at a time, not 16 per word at once
        quantiles = (np.arange(start, min(start + NOISE_TABLE_CHUNK, size), dtype=np.float64) + 0.5) / size * cdf[-1]
        table[start:start + len(quantiles)] = np.minimum(np.searchsorted(cdf, quantiles, side="right"), len(cdf) - 1)
    return table


def avoid_true_word(negatives: Any, positives: Any, vocab_size: int) -> Any:
    """A negative draw equal to its row's true word becomes the next word id, cycling over
    1..vocab_size - 1 so that it is never padding (0). Masking its logit instead costs 4x the step
    time under XLA on the CPU (measured). Draws may repeat within a row, as in word2vec.c."""
    return ops.where(negatives == positives, negatives % (vocab_size - 1) + 1, negatives)


def initial_tables(vocab_size: int, embedding_dim: int, initializer: str,
                   seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The input and output tables' starting values, seeded here, not by a global seed (the same on every
    backend and in every process of a group), drawn in place by numpy: a table of a million words costs
    no transient copy (Keras's initializers on JAX held four).

    "word2vec" (word2vec.c's and gensim's): input vectors uniform in [-0.5, 0.5) / dim, output vectors
    zero; "keras" (the tutorial's, Keras's default): both uniform in [-0.05, 0.05).
    """
    shape = (vocab_size, embedding_dim)

    def uniform(stream: int, half_width: float) -> np.ndarray:
        table = aligned_table(shape)
        np.random.default_rng([seed or 0, stream]).random(out=table, dtype=np.float32)
        table -= np.float32(0.5)
        table *= np.float32(2 * half_width)
        return table

    if initializer == "word2vec":
        context = aligned_table(shape)
        context.fill(0.0)
        return uniform(0, 0.5 / embedding_dim), context
    return uniform(0, 0.05), uniform(1, 0.05)


def aligned_table(shape: tuple[int, int]) -> np.ndarray:
    """An uninitialized float32 table whose data starts on a 64-byte boundary, XLA's CPU alignment: JAX then
    takes it over through DLPack without a copy (numpy's large arrays start 16 bytes into their pages, and
    JAX copied those: +1.3 GB at a million words, dimension 300)."""
    count = shape[0] * shape[1]
    raw = np.empty(count + 16, np.float32)
    start = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[start:start + count].reshape(shape)


class TrainedValues(keras.initializers.Initializer):
    """A table's values handed to its Keras variable: on JAX's CPU without a copy (DLPack), so a table of a
    million words is never held twice."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        if tuple(shape) != self.values.shape:
            raise ValueError(f"a table of shape {self.values.shape} cannot be a variable of shape {tuple(shape)}")
        if keras.backend.backend() == "jax" and self.values.flags.writeable:  # a read-only one is a JAX array's view
            import jax

            if jax.default_backend() == "cpu":
                return jax.dlpack.from_dlpack(self.values)
        return self.values


class Table(layers.Embedding):
    """An embedding table that starts from numpy values. Values `trained` elsewhere are final: the table
    saves them as they are, since a DLPack-imported JAX variable is copied (and the copy kept) on its way
    to numpy."""

    def __init__(self, values: np.ndarray, name: str, trained: bool) -> None:
        super().__init__(*values.shape, embeddings_initializer=TrainedValues(values), name=name)
        self.trained_values = values if trained else None

    def save_own_variables(self, store: Any) -> None:
        if self.trained_values is None:
            super().save_own_variables(store)
        else:
            store["0"] = WrittenInPlace(self.trained_values)  # Embedding's own layout: one variable, "0"


class WrittenInPlace:
    """A table handed to Keras's weights file as it is: the file's store converts each value with `np.array`,
    a copy (a table's worth of memory more, 1.7 GB at the end of a 1.4M-word training), and only reads it,
    so the table is given out even when a copy is asked for."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


@keras.saving.register_keras_serializable(package="w2vpipe")
class Word2Vec(keras.Model):
    """Scores (inputs, outputs) examples by the dot products of their embeddings.

    Skip-gram's input is one word (batch,); CBOW's a window of words (batch, 2 * window), whose
    vectors are averaged (padding, id 0, left out). `target_embedding` holds the input vectors, the
    word vectors users keep; `context_embedding` the output vectors, which exist for training.
    With `num_ns > 0` the model draws that many negatives per example itself while training, from
    `noise_probabilities` (word2vec.c's way), so the examples need only hold positive pairs.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_ns: int = 0, seed: int | None = None,
                 initializer: str = "keras", tables: tuple[np.ndarray, np.ndarray] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.num_ns = num_ns
        self.seed = seed
        self.initializer = initializer
        # Trained elsewhere (word2vec.c's SGD loop), or to be trained by model.fit (or loaded) from their start.
        target, context = tables if tables is not None else initial_tables(vocab_size, embedding_dim, initializer,
                                                                           seed)
        self.target_embedding = Table(target, TARGET_EMBEDDING, trained=tables is not None)
        self.context_embedding = Table(context, CONTEXT_EMBEDDING, trained=tables is not None)
        if num_ns:
            self.noise_table = self.add_weight(shape=(noise_table_size(vocab_size),), initializer="zeros",
                                               trainable=False, name="noise_table", dtype="int32")
            self.seed_generator = keras.random.SeedGenerator(seed)

    # The negatives' random state is saved with the weights (Keras leaves seed generators out), so a
    # training resumed from a checkpoint draws what an unbroken one would.
    SEED_STATE_KEY = "seed_generator_state"

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        if self.num_ns:
            store[self.SEED_STATE_KEY] = self.seed_generator.state

    def load_own_variables(self, store: Any) -> None:
        keys = list(store.keys())
        if self.num_ns and self.SEED_STATE_KEY in keys:
            self.seed_generator.state.assign(store[self.SEED_STATE_KEY])
        super().load_own_variables({key: store[key] for key in keys if key != self.SEED_STATE_KEY})

    def set_noise(self, probabilities: np.ndarray) -> None:
        self.noise_table.assign(noise_table(probabilities))

    def draw_negatives(self, positives: Any) -> Any:
        """`num_ns` noise words per row: uniform draws into the noise table."""
        batch = ops.shape(positives)[0]
        slots = keras.random.randint((batch * self.num_ns,), 0, noise_table_size(self.vocab_size),
                                     seed=self.seed_generator)
        return ops.reshape(ops.take(self.noise_table, slots), (batch, self.num_ns))

    def negatives_for(self, positives: Any) -> Any:
        """Drawn negatives, none equal to its row's true word (`avoid_true_word`)."""
        return avoid_true_word(ops.cast(self.draw_negatives(positives), positives.dtype), positives, self.vocab_size)

    def call(self, inputs: tuple[Any, Any], training: bool = False) -> Any:
        words, outputs = inputs  # (batch,) or (batch, window), and (batch, outputs)
        if bool(self.num_ns) and training:
            positives = outputs[:, :1]
            outputs = ops.concatenate([positives, self.negatives_for(positives)], axis=1)
        input_vectors = self.target_embedding(words)
        if len(words.shape) == 2:  # CBOW: the mean of the window's vectors
            present = ops.cast(ops.expand_dims(words != 0, -1), input_vectors.dtype)
            total = ops.sum(input_vectors * present, axis=1)
            mean = total / ops.maximum(ops.sum(present, axis=1), 1)
            # word2vec.c's (and gensim's) CBOW: the mean forward, but each window word takes the
            # whole error backward, not error / window size.
            input_vectors = ops.stop_gradient(mean) + total - ops.stop_gradient(total)
        output_vectors = self.context_embedding(outputs)  # (batch, outputs, dim)
        return ops.einsum("be,bce->bc", input_vectors, output_vectors)  # logits (batch, outputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "num_ns": self.num_ns, "seed": self.seed, "initializer": self.initializer}


def build_word2vec(
    vocab_size: int,
    embedding_dim: int,
    num_contexts: int,
    input_width: int = 0,
    seed: int | None = None,
    initializer: str = "keras",
    tables: tuple[np.ndarray, np.ndarray] | None = None,
    num_ns_on_device: int = 0,
    noise: np.ndarray | None = None,
    adam_learning_rate: float | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> Word2Vec:
    """The model, built: its tables from `tables` (word2vec.c's SGD loop trains them outside Keras), or
    from the initializers and, with `adam_learning_rate`, compiled for the tutorial's recipe (softmax
    cross-entropy over the contexts, dense Adam) to train with `model.fit`.

    `input_width` is 0 for skip-gram (one input word), CBOW's window width otherwise.
    """
    model = Word2Vec(vocab_size, embedding_dim, num_ns=num_ns_on_device, seed=seed, initializer=initializer,
                     tables=tables)
    if adam_learning_rate is not None:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=adam_learning_rate),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                      jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    input_shape = (1, input_width) if input_width else (1,)
    model((ops.zeros(input_shape, dtype="int32"), ops.zeros((1, num_contexts), dtype="int32")))
    if num_ns_on_device:
        if noise is None:
            raise ValueError("negatives drawn on the device need a noise distribution")
        model.set_noise(noise)
    return model


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, byte for byte the same for the same weights, streamed to disk.

    Keras stamps the save time into the archive (its metadata and a zip entry's date), which would
    make every training a new version of the model for DVC; the run's time is in MLflow. Saved as a
    folder (Keras's `zipped=False`) and zipped here entry by entry, as Keras lays out a .keras file:
    Keras's own zipping holds the weights in memory, twice, when it judges memory sufficient.
    """
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, atomic_file(path) as tmp:
        saved = Path(scratch) / "model"
        with tensorflow_unseen():
            model.save(saved, zipped=False)
        metadata = json.loads((saved / "metadata.json").read_text())
        metadata["date_saved"] = "{:04}-{:02}-{:02}@{:02}:{:02}:{:02}".format(*ZIP_EPOCH)
        (saved / "metadata.json").write_text(json.dumps(metadata))
        with zipfile.ZipFile(tmp, "w") as archive:
            for name in ("metadata.json", "config.json", "model.weights.h5"):
                entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                entry.file_size = (saved / name).stat().st_size  # zip64 where it needs
                with (saved / name).open("rb") as source, archive.open(entry, "w") as target:
                    shutil.copyfileobj(source, target, 1 << 24)
