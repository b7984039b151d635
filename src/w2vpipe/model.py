"""The tutorial's skip-gram model in backend-agnostic Keras 3 (`keras.ops` and `keras.random` only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from w2vpipe.backend import import_keras

import_keras()  # before the first `import keras`, which it makes cheaper
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

TARGET_EMBEDDING = "w2v_embedding"
CONTEXT_EMBEDDING = "context_embedding"
# Logit given to a drawn negative that equals the true context: adds nothing to either loss, and
# stays finite in float16.
EXCLUDED_LOGIT = -1e4


@keras.saving.register_keras_serializable(package="w2vpipe")
class Word2Vec(keras.Model):
    """Scores (target, contexts) pairs by the dot products of their embeddings.

    `target_embedding` is the word vector users keep; `context_embedding` exists for training.
    With `num_ns > 0` the model draws that many negatives per pair itself while training, from
    `noise_probabilities` (word2vec.c's way), so the examples need only hold positive pairs.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, num_ns: int = 0, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.num_ns = num_ns
        self.seed = seed
        self.target_embedding = layers.Embedding(vocab_size, embedding_dim, name=TARGET_EMBEDDING)
        self.context_embedding = layers.Embedding(vocab_size, embedding_dim, name=CONTEXT_EMBEDDING)
        if num_ns:
            self.noise_cdf = self.add_weight(shape=(vocab_size,), initializer="ones", trainable=False,
                                             name="noise_cdf", dtype="float32")
            self.seed_generator = keras.random.SeedGenerator(seed)

    def set_noise(self, probabilities: np.ndarray) -> None:
        cdf = np.cumsum(probabilities, dtype=np.float64)
        self.noise_cdf.assign((cdf / cdf[-1]).astype(np.float32))

    def draw_negatives(self, positives: Any) -> Any:
        """`num_ns` noise words per row, by inverting the noise CDF at uniform draws."""
        batch = ops.shape(positives)[0]
        uniform = keras.random.uniform((batch * self.num_ns,), seed=self.seed_generator)
        ids = ops.searchsorted(self.noise_cdf, uniform, side="right")
        return ops.reshape(ops.minimum(ids, self.vocab_size - 1), (batch, self.num_ns))

    def call(self, inputs: tuple[Any, Any], training: bool = False) -> Any:
        target, context = inputs  # (batch,), (batch, contexts)
        draw = bool(self.num_ns) and training
        if draw:
            positives = context[:, :1]
            negatives = ops.cast(self.draw_negatives(positives), positives.dtype)
            context = ops.concatenate([positives, negatives], axis=1)
        word_emb = self.target_embedding(target)  # (batch, dim)
        context_emb = self.context_embedding(context)  # (batch, contexts, dim)
        logits = ops.einsum("be,bce->bc", word_emb, context_emb)  # (batch, contexts)
        if draw:
            is_positive = ops.concatenate([ops.zeros_like(positives, dtype="bool"), negatives == positives], axis=1)
            logits = ops.where(is_positive, ops.cast(EXCLUDED_LOGIT, logits.dtype), logits)
        return logits

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "num_ns": self.num_ns, "seed": self.seed}


@keras.saving.register_keras_serializable(package="w2vpipe")
class NegativeSamplingLoss(keras.losses.Loss):
    """word2vec.c's objective: sigmoid cross-entropy of every (target, context) score, summed.

    Summed over contexts and the batch, so a learning rate means what it means in word2vec.c: the
    step each pair takes.
    """

    def __init__(self, name: str = "negative_sampling", **kwargs: Any) -> None:
        super().__init__(name=name, reduction="sum", **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.sum(ops.binary_crossentropy(y_true, y_pred, from_logits=True), axis=-1)


def build_word2vec(
    vocab_size: int,
    embedding_dim: int,
    num_contexts: int,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    total_steps: int = 1,
    num_ns_on_device: int = 0,
    noise: np.ndarray | None = None,
    seed: int | None = None,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> Word2Vec:
    """The model, compiled for one of two recipes:

    - "adam": the tutorial's: softmax cross-entropy over the contexts (mean), dense Adam.
    - "sgd": word2vec.c's: sigmoid cross-entropy (summed), plain SGD whose rate falls linearly to
      1e-4 of its start over `total_steps`. Gradients of embedding lookups are sparse, so each step
      touches only the rows its batch uses (with XLA its cost does not grow with the vocabulary).
    """
    model = Word2Vec(vocab_size, embedding_dim, num_ns=num_ns_on_device, seed=seed)
    if optimizer == "adam":
        keras_optimizer: keras.optimizers.Optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        loss: keras.losses.Loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        schedule = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, decay_steps=max(total_steps, 1), end_learning_rate=learning_rate * 1e-4)
        keras_optimizer = keras.optimizers.SGD(learning_rate=schedule)
        loss = NegativeSamplingLoss()
    model.compile(optimizer=keras_optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    model((ops.zeros((1,), dtype="int32"), ops.zeros((1, num_contexts), dtype="int32")))
    if num_ns_on_device:
        if noise is None:
            raise ValueError("negatives drawn on the device need a noise distribution")
        model.set_noise(noise)
    return model
