"""The embedding as gensim's `KeyedVectors`: its binary files and the questions users ask of it (nearest
words, analogies, similarity). gensim writes, reads and answers. (The text files: `w2vpipe.export`.)"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file
from w2vpipe.vocabulary import PAD_TOKEN, UNKNOWN_TOKEN

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

# word2vec.c's two formats (`KeyedVectors.load_word2vec_format(path, binary=...)` reads them, as do most
# tools) and gensim's own file (`KeyedVectors.load(path)`, the fastest to load).
WORD2VEC_TEXT_FILE = "word2vec.txt"
WORD2VEC_BINARY_FILE = "word2vec.bin"
KEYED_VECTORS_FILE = "word2vec.kv"


@dataclass(frozen=True)
class Neighbour:
    word: str
    cosine: float


def keyed_vectors(vocabulary: list[str], weights: np.ndarray, dtype: type = np.float32) -> KeyedVectors:
    """One vector per word, padding and [UNK] left out; the table may share `weights`' memory."""
    if len(vocabulary) != len(weights):
        raise ValueError(f"vocabulary has {len(vocabulary)} tokens but the embedding has {len(weights)} rows")
    rows = word_rows(vocabulary)
    vectors = keys_with_empty_table([vocabulary[index] for index in rows], weights.shape[1], dtype)
    run = consecutive(rows)
    if run is not None:
        # The table is a view of `weights` where the dtype matches, not a second table in memory (1.7 GB at 1.4M
        # words x 300).
        vectors.vectors = np.asarray(weights[run], dtype=dtype)
    else:
        np.take(np.asarray(weights, dtype=dtype), rows, axis=0, out=vectors.vectors, mode="clip")  # "raise" buffers
    return vectors


def word_rows(vocabulary: list[str]) -> np.ndarray:
    """The rows of the vocabulary's words, in order: padding and [UNK] left out, as word2vec's files have them."""
    return np.array([index for index, token in enumerate(vocabulary) if token not in (PAD_TOKEN, UNKNOWN_TOKEN)],
                    dtype=np.int64)


def consecutive(rows: np.ndarray) -> slice | None:
    """Ascending `rows` as one slice when they follow each other, as a vocabulary's words do (padding and [UNK]
    come first), so that a table's rows are a view, not a copy; None otherwise."""
    return slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) and rows[-1] - rows[0] + 1 == len(rows) else None


def keys_with_empty_table(keys: list[str], vector_size: int, dtype: type) -> KeyedVectors:
    """A KeyedVectors of these keys whose table the caller fills in place, as gensim's own word2vec reader fills
    one: `add_vectors` copies the table twice and checks each key in Python (5 GB and 10 s at a million words
    of dimension 300)."""
    from gensim.models import KeyedVectors

    vectors = KeyedVectors(vector_size=vector_size, count=len(keys), dtype=dtype)
    vectors.index_to_key = list(keys)
    vectors.key_to_index = {key: index for index, key in enumerate(vectors.index_to_key)}
    return vectors


def write_standard_files(out_dir: Path, vectors: KeyedVectors) -> list[str]:
    """word2vec.c's binary file and gensim's KeyedVectors file, both by gensim's writers, every word; returns
    their names."""
    logging.getLogger("gensim").setLevel(logging.WARNING)  # gensim logs each save at INFO
    with atomic_file(out_dir / WORD2VEC_BINARY_FILE) as tmp:
        vectors.save_word2vec_format(str(tmp), binary=True)
    # gensim stamps each save into the object (date, host platform, Python): off, so the same vectors
    # make the same file. Saved through a file handle, the arrays stay inside the one file (by name,
    # gensim may put large ones in files beside it, named after the temporary file). Pickle protocol 5
    # writes the table from its own memory; gensim's default 4 copies it first (1.1M words x 300: 1.6
    # against 2.9 GB and 3.6 against 10.5 s).
    vectors.lifecycle_events = None
    with atomic_file(out_dir / KEYED_VECTORS_FILE) as tmp, tmp.open("wb") as handle:
        vectors.save(handle, pickle_protocol=5)
    return [WORD2VEC_BINARY_FILE, KEYED_VECTORS_FILE]


def load_keyed_vectors(path: Path) -> KeyedVectors:
    """gensim's KeyedVectors file, or a folder holding one (the export stage's)."""
    from gensim.models import KeyedVectors

    file = path / KEYED_VECTORS_FILE if path.is_dir() else path
    if not file.is_file():
        raise PipelineError(f"{file} not found: run the export stage first (dvc repro export)")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    try:
        return KeyedVectors.load(str(file))
    except Exception as error:  # pickle, EOF and attribute errors alike: the file is not gensim's
        raise PipelineError(f"{file} is not a gensim KeyedVectors file ({type(error).__name__}): rerun the "
                            "export stage (dvc repro -f export)") from None


class UnknownWordError(PipelineError):
    """A word outside the vocabulary, with the vocabulary's words spelt most like it, closest first."""

    def __init__(self, word: str, closest: list[str], vocabulary_size: int) -> None:
        hint = f"closest by spelling: {', '.join(closest)}" if closest else "no word in it is spelt alike"
        super().__init__(f"'{word}' is not in the vocabulary of {vocabulary_size:,} words ({hint})")
        self.word, self.closest = word, closest


def check_known(vectors: KeyedVectors, words: list[str]) -> None:
    """Stop with one line for the first word outside the vocabulary, naming the closest words by spelling."""
    for word in words:
        if word not in vectors.key_to_index:
            raise UnknownWordError(word, difflib.get_close_matches(word, vectors.index_to_key, n=5, cutoff=0.6),
                                   len(vectors))


def neighbours(vectors: KeyedVectors, word: str, top: int = 10) -> list[Neighbour]:
    """The `top` nearest words by cosine, closest first."""
    check_known(vectors, [word])
    return [Neighbour(other, float(cosine)) for other, cosine in vectors.most_similar(word, topn=top)]


def analogy(vectors: KeyedVectors, a: str, b: str, c: str, top: int = 10) -> list[Neighbour]:
    """a is to b as c is to ?: the words nearest b - a + c (3CosAdd, gensim's `most_similar`), the three left out."""
    check_known(vectors, [a, b, c])
    return [Neighbour(word, float(cosine))
            for word, cosine in vectors.most_similar(positive=[b, c], negative=[a], topn=top)]


def similarity(vectors: KeyedVectors, first: str, second: str) -> float:
    """The cosine of the two words' vectors."""
    check_known(vectors, [first, second])
    return float(vectors.similarity(first, second))
