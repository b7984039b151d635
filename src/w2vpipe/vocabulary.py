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


def custom_standardization(input_data: tf.Tensor) -> tf.Tensor:
    """The tutorial's standardization: lowercase, then strip ASCII punctuation."""
    import tensorflow as tf

    lowercase = tf.strings.lower(input_data)
    return tf.strings.regex_replace(lowercase, "[%s]" % re.escape(string.punctuation), "")


def nonempty_lines(corpus_path: Path) -> tf.data.Dataset:
    """The corpus's non-empty lines, as the tutorial reads them."""
    import tensorflow as tf

    return tf.data.TextLineDataset(str(corpus_path)).filter(lambda line: tf.strings.length(line) > 0)


def adapt_vectorizer(corpus_path: Path, vocab_size: int, sequence_length: int) -> TextVectorization:
    from keras import layers

    vectorize_layer = layers.TextVectorization(
        standardize=custom_standardization,
        max_tokens=vocab_size,
        output_mode="int",
        output_sequence_length=sequence_length,
    )
    vectorize_layer.adapt(nonempty_lines(corpus_path).batch(BATCH_LINES))
    return vectorize_layer


def vectorize_corpus(vectorize_layer: TextVectorization, corpus_path: Path) -> np.ndarray:
    """Integer sequences, one row per non-empty line, padded or truncated to the layer's length."""
    import tensorflow as tf

    batches = nonempty_lines(corpus_path).batch(BATCH_LINES).map(vectorize_layer).prefetch(tf.data.AUTOTUNE)
    return np.concatenate([batch for batch in batches.as_numpy_iterator()]).astype(np.int32)


def save_vocabulary(vocabulary: list[str], path: Path) -> None:
    """One token a line, in the layer's order (line 1 is the padding token, empty)."""
    with atomic_file(path) as tmp:
        tmp.write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")


def load_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the vectorize stage first (dvc repro vectorize)")
    vocabulary = path.read_text(encoding="utf-8").split("\n")[:-1]
    if len(vocabulary) < 3 or vocabulary[0] != PAD_TOKEN:
        raise PipelineError(f"{path} is not a vocabulary written by the vectorize stage: rerun it (dvc repro -f vectorize)")
    return vocabulary
