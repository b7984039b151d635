"""Vocabulary and vectorization: the tutorial's Keras `TextVectorization`, adapted on the corpus.

TensorFlow is imported inside the functions that need it: importing it costs seconds, and the
vocabulary file I/O here serves stages that never touch TensorFlow.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file

if TYPE_CHECKING:
    import tensorflow as tf
    from keras.layers import TextVectorization

PAD_TOKEN = ""
BATCH_LINES = 1024
# Lines vectorized per call: bounds the memory of the intermediate string tensors.
VECTORIZE_LINES = 100_000


def custom_standardization(input_data: tf.Tensor) -> tf.Tensor:
    """The tutorial's standardization: lowercase, then strip ASCII punctuation."""
    import tensorflow as tf

    lowercase = tf.strings.lower(input_data)
    return tf.strings.regex_replace(lowercase, f"[{re.escape(string.punctuation)}]", "")


def read_nonempty_lines(corpus_path: Path) -> list[str]:
    """The corpus's non-empty lines, split as `tf.data.TextLineDataset` splits them."""
    with corpus_path.open(encoding="utf-8", newline="") as corpus:
        lines = (line.removesuffix("\n").removesuffix("\r") for line in corpus)
        return [line for line in lines if line]


def adapt_vectorizer(lines: list[str], vocab_size: int, sequence_length: int) -> TextVectorization:
    """The tutorial's TextVectorization layer, adapted on `lines`.

    Adapting on an in-memory tensor gives the vocabulary a `tf.data` pipeline gives, ten times faster.
    """
    import tensorflow as tf

    from w2vpipe.backend import import_keras

    vectorize_layer = import_keras().layers.TextVectorization(
        standardize=custom_standardization,
        max_tokens=vocab_size,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    vectorize_layer.adapt(tf.constant(lines), batch_size=BATCH_LINES)
    return vectorize_layer


def vectorize_lines(vectorize_layer: TextVectorization, lines: list[str]) -> np.ndarray:
    """Integer sequences, one row per line, padded or truncated to the layer's length."""
    import tensorflow as tf

    blocks = [np.asarray(vectorize_layer(tf.constant(lines[start : start + VECTORIZE_LINES])))
              for start in range(0, len(lines), VECTORIZE_LINES)]
    return np.concatenate(blocks).astype(np.int32)


def save_vocabulary(vocabulary: list[str], path: Path) -> None:
    """One token a line, in the layer's order (line 1 is the padding token, empty)."""
    with atomic_file(path) as tmp:
        tmp.write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")


def load_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the vectorize stage first (dvc repro vectorize)")
    vocabulary = path.read_text(encoding="utf-8").split("\n")[:-1]
    if len(vocabulary) < 3 or vocabulary[0] != PAD_TOKEN:
        raise PipelineError(
            f"{path} is not a vocabulary written by the vectorize stage: rerun it (dvc repro -f vectorize)"
        )
    return vocabulary
