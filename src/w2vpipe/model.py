"""The tutorial's skip-gram model in backend-agnostic Keras 3 (`keras.ops` only)."""

from __future__ import annotations

from typing import Any

from w2vpipe.backend import import_keras

import_keras()  # before the first `import keras`, which it makes cheaper
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

TARGET_EMBEDDING = "w2v_embedding"
CONTEXT_EMBEDDING = "context_embedding"


@keras.saving.register_keras_serializable(package="w2vpipe")
class Word2Vec(keras.Model):
    """Scores (target, contexts) pairs by the dot products of their embeddings.

    `target_embedding` is the word vector users keep; `context_embedding` exists for training.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.target_embedding = layers.Embedding(vocab_size, embedding_dim, name=TARGET_EMBEDDING)
        self.context_embedding = layers.Embedding(vocab_size, embedding_dim, name=CONTEXT_EMBEDDING)

    def call(self, inputs: tuple[Any, Any]) -> Any:
        target, context = inputs  # (batch,), (batch, 1 + num_ns)
        word_emb = self.target_embedding(target)  # (batch, dim)
        context_emb = self.context_embedding(context)  # (batch, 1 + num_ns, dim)
        return ops.einsum("be,bce->bc", word_emb, context_emb)  # logits (batch, 1 + num_ns)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim}


def build_word2vec(vocab_size: int, embedding_dim: int, num_contexts: int, learning_rate: float,
                   jit_compile: bool | str = "auto", steps_per_execution: int = 1) -> Word2Vec:
    """The tutorial's model, compiled with its loss (softmax cross-entropy over the contexts) and Adam."""
    model = Word2Vec(vocab_size, embedding_dim)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    model((ops.zeros((1,), dtype="int32"), ops.zeros((1, num_contexts), dtype="int32")))
    return model
