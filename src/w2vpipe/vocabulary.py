"""Vocabulary and vectorization: the tutorial's Keras `TextVectorization`, adapted on the corpus (the
reference `w2vpipe.tokens` is tested against: the vectorize stage runs that one, without TensorFlow),
the held-out lines, and the vocabulary and sentence files.

TensorFlow is imported inside the functions that need it: importing it costs seconds, and the
vocabulary file I/O here serves stages that never touch TensorFlow.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from w2vpipe.backend import import_tensorflow
from w2vpipe.corpus import open_corpus_text
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file, load_shard, save_shard

if TYPE_CHECKING:
    import tensorflow as tf
    from keras.layers import TextVectorization

PAD_TOKEN = ""
UNKNOWN_TOKEN = "[UNK]"  # TextVectorization's out-of-vocabulary token, id 1
# gensim's MAX_WORDS_IN_BATCH: the longest sentence it trains on; longer lines are cut into pieces this long.
MAX_LINE_WORDS = 10_000
# Where words end: ASCII whitespace, where `bytes.split()` and TextVectorization split (line ends included).
WORD_BREAKS = np.zeros(256, dtype=bool)
WORD_BREAKS[list(b" \t\n\v\f\r")] = True
Line = TypeVar("Line", str, bytes)


@dataclass(frozen=True)
class Sentences:
    """A block of vectorized lines, flattened: `tokens` holds them end to end, `lengths` says where
    each ends. With a fixed `sequence_length` every length is that (padding ids 0 included)."""

    tokens: np.ndarray  # (total tokens,) int32
    lengths: np.ndarray  # (lines,) int32

    def __len__(self) -> int:
        return len(self.lengths)


def custom_standardization(input_data: tf.Tensor) -> tf.Tensor:
    """The tutorial's standardization: lowercase, then strip ASCII punctuation."""
    tf = import_tensorflow()

    lowercase = tf.strings.lower(input_data)
    return tf.strings.regex_replace(lowercase, f"[{re.escape(string.punctuation)}]", "")


def cut_line(line: bytes) -> list[bytes]:
    """`line` in pieces of `MAX_LINE_WORDS` words, each piece beginning at a word (the last one holds the
    rest), as the vectorize stage cuts it (`corpus_shards`). A line too short to hold more words is itself."""
    if len(line) < 2 * MAX_LINE_WORDS + 1:  # n words take at least 2n - 1 bytes
        return [line]
    breaks = WORD_BREAKS[np.frombuffer(line, dtype=np.uint8)]
    word_starts = np.flatnonzero(~breaks & np.concatenate([[True], breaks[:-1]]))
    bounds = [0, *word_starts[MAX_LINE_WORDS::MAX_LINE_WORDS].tolist(), len(line)]
    return [line[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def iter_line_blocks(corpus_path: Path, block_lines: int) -> Iterator[list[str]]:
    """The corpus's non-empty lines, split as `tf.data.TextLineDataset` splits them, a line of more than
    `MAX_LINE_WORDS` words cut into pieces (`cut_line`), `block_lines` at a time: the lines the pipeline
    trains on, read as text (each line whole: the tests' reference reader; the stage reads byte ranges,
    `corpus_shards`)."""
    block: list[str] = []
    with open_corpus_text(corpus_path) as corpus:
        for raw in corpus:
            line = raw.removesuffix("\n").removesuffix("\r")
            # Words are split at ASCII whitespace, one character each: a line of fewer characters holds no cut.
            pieces = ([piece.decode("utf-8") for piece in cut_line(line.encode("utf-8"))]
                      if len(line) > 2 * MAX_LINE_WORDS else [line] if line else [])
            for piece in pieces:
                block.append(piece)
                if len(block) == block_lines:
                    yield block
                    block = []
    if block:
        yield block


def validation_mask(first_line: int, lines: int, fraction: float) -> np.ndarray:
    """Which of lines `first_line .. first_line + lines - 1` (of the whole corpus) are held out:
    evenly spread, one line in every 1 / `fraction`, the same whatever the block size."""
    index = np.arange(first_line, first_line + lines, dtype=np.float64)
    return np.floor((index + 1) * fraction) > np.floor(index * fraction)


def split_block(lines: list[Line], first_line: int, fraction: float) -> tuple[list[Line], list[Line]]:
    """(training lines, held-out lines) of a block that starts at corpus line `first_line`."""
    held_out = validation_mask(first_line, len(lines), fraction)
    return ([line for line, out in zip(lines, held_out, strict=True) if not out],
            [line for line, out in zip(lines, held_out, strict=True) if out])


def adapt_vectorizer(
    corpus_path: Path, vocab_size: int, sequence_length: int | None, block_lines: int = 100_000,
    validation_fraction: float = 0.0,
) -> TextVectorization:
    """The tutorial's TextVectorization layer, adapted on the corpus streamed in blocks of lines.

    Large blocks of lines make few tf.data elements: a tenth of the time of the tutorial's
    1024-line batches, for the same vocabulary. With `sequence_length=None` the layer returns
    whole lines (ragged), as gensim and word2vec.c read them. Held-out lines (a
    `validation_fraction` of them) take no part: their words are as unseen as at training.
    """
    tf = import_tensorflow()

    from w2vpipe.backend import import_keras

    vectorize_layer = import_keras().layers.TextVectorization(
        standardize=custom_standardization,
        max_tokens=vocab_size,
        output_mode="int",
        output_sequence_length=sequence_length,
        ragged=sequence_length is None,
    )
    def training_blocks() -> Iterator[np.ndarray]:
        for number, block in enumerate(iter_line_blocks(corpus_path, block_lines)):
            yield np.array(split_block(block, number * block_lines, validation_fraction)[0], dtype=object)

    blocks = tf.data.Dataset.from_generator(training_blocks, output_signature=tf.TensorSpec(shape=(None,),
                                                                                            dtype=tf.string))
    vectorize_layer.adapt(blocks)
    return vectorize_layer


def vectorize_block(vectorize_layer: TextVectorization, lines: list[str]) -> Sentences:
    """Integer ids of a block of lines: padded/truncated rows, or whole lines in ragged mode."""
    tf = import_tensorflow()

    if not lines:  # a tiny shard may hold out every line it has
        return Sentences(tokens=np.zeros(0, dtype=np.int32), lengths=np.zeros(0, dtype=np.int32))
    vectorized = vectorize_layer(tf.constant(lines))
    if isinstance(vectorized, tf.RaggedTensor):
        return Sentences(tokens=vectorized.flat_values.numpy().astype(np.int32),
                         lengths=vectorized.row_lengths().numpy().astype(np.int32))
    rows = np.asarray(vectorized, dtype=np.int32)
    return Sentences(tokens=rows.reshape(-1), lengths=np.full(len(rows), rows.shape[1], dtype=np.int32))


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


def save_sentences(sentences: Sentences, directory: Path) -> None:
    save_shard(directory, {"tokens": sentences.tokens, "lengths": sentences.lengths})


def load_sentences(directory: Path) -> Sentences:
    tokens, lengths = load_shard(directory, ("tokens", "lengths"))
    return Sentences(tokens=tokens, lengths=lengths)
