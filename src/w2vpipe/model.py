"""The tutorial's skip-gram model, and CBOW, in backend-agnostic Keras 3 (`keras.ops` and `keras.random` only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from w2vpipe.backend import import_keras
from w2vpipe.tables import initial_tables, noise_table, noise_table_size

import_keras()  # before the first `import keras`, which it makes cheaper
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

TARGET_EMBEDDING = "w2v_embedding"
CONTEXT_EMBEDDING = "context_embedding"


def avoid_true_word(negatives: Any, positives: Any, vocab_size: int) -> Any:
    """A negative draw equal to its row's true word becomes the next word id, cycling over
    1..vocab_size - 1 so that it is never padding (0). Masking its logit instead costs 4x the step
    time under XLA on the CPU (measured). Draws may repeat within a row, as in word2vec.c."""
    return ops.where(negatives == positives, negatives % (vocab_size - 1) + 1, negatives)


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
    """An embedding table that starts from numpy values."""

    def __init__(self, values: np.ndarray, name: str) -> None:
        super().__init__(*values.shape, embeddings_initializer=TrainedValues(values), name=name)


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
        self.target_embedding = Table(target, TARGET_EMBEDDING)
        self.context_embedding = Table(context, CONTEXT_EMBEDDING)
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
