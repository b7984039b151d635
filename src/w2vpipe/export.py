"""The embedding's text files: the TensorFlow Embedding Projector's (vectors.tsv, metadata.tsv, its config) and
word2vec.c's text format (word2vec.txt), each value formatted once for both."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from w2vpipe.files import atomic_file
from w2vpipe.vectors import WORD2VEC_TEXT_FILE, consecutive, word_rows

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
PROJECTOR_CONFIG_FILE = "projector_config.pbtxt"

# str() of a float32 takes ~0.5 us: 100,000 words x 300 values are 15 s on one core. Tables of more values
# than this are formatted on the workers asked for, in blocks of rows.
PARALLEL_VALUES = 4_000_000
BLOCK_ROWS = 2_000


def space_separated(rows: np.ndarray) -> list[str]:
    """Each row's values as `str()` of its float32 (numpy's shortest form that reads back the same), joined
    by spaces: a line of gensim's word2vec text file, and of the tutorial's vectors.tsv with tabs."""
    return [" ".join(map(str, row)) for row in rows]


def value_lines(rows: np.ndarray, workers: int = 1) -> Iterator[str]:
    """`space_separated(rows)`, in order; on `workers` processes when the table is large, a few blocks at a
    time, so that memory holds a few blocks' lines, not the file's. Worker processes start as `spawn` does:
    a script that asks for them must guard its entry point (`if __name__ == "__main__":`)."""
    starts = range(0, len(rows), BLOCK_ROWS)
    workers = min(workers, len(starts))
    if rows.size < PARALLEL_VALUES or workers < 2:
        yield from space_separated(rows)
        return
    # spawn: no fork of a process that may hold threads (BLAS's, a tracking client's)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future[list[str]]] = deque()
        for start in starts:
            pending.append(pool.submit(space_separated, np.asarray(rows[start:start + BLOCK_ROWS])))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def write_text_files(out_dir: Path, vocabulary: list[str], weights: np.ndarray, tensor_name: str,
                     words: int | None = None, workers: int = 1) -> None:
    """The first `words` words (all when None), the vocabulary's most frequent, in two formats:

    - the Projector's files exactly as the tutorial writes them: its rows after row 0 (padding);
    - word2vec.txt exactly as gensim's `save_word2vec_format` writes it: padding and [UNK] left out.

    Each value is `str()` of its float32 (the tutorial's and gensim's format), formatted once for both files,
    on `workers` processes when the table is large (`value_lines`).
    """
    if len(vocabulary) != len(weights):
        raise ValueError(f"vocabulary has {len(vocabulary)} tokens but the embedding has {len(weights)} rows")
    projector_rows = np.arange(1, len(vocabulary))[:words]
    text_rows = word_rows(vocabulary)[:words]
    rows = np.union1d(projector_rows, text_rows)
    run = consecutive(rows)
    values = weights[rows] if run is None else weights[run]
    in_projector, in_text = np.isin(rows, projector_rows).tolist(), np.isin(rows, text_rows).tolist()
    with atomic_file(out_dir / VECTORS_FILE) as projector_tmp, atomic_file(out_dir / WORD2VEC_TEXT_FILE) as text_tmp, \
            projector_tmp.open("w", encoding="utf-8") as projector, \
            text_tmp.open("w", encoding="utf-8", newline="\n") as text:
        text.write(f"{len(text_rows)} {weights.shape[1]}\n")
        for row, line, projected, texted in zip(rows.tolist(), value_lines(values, workers), in_projector, in_text,
                                                strict=True):
            if projected:
                projector.write(line.replace(" ", "\t") + "\n")
            if texted:
                text.write(f"{vocabulary[row]} {line}\n")
    with atomic_file(out_dir / METADATA_FILE) as tmp:
        tmp.write_text("".join(f"{vocabulary[row]}\n" for row in projector_rows.tolist()), encoding="utf-8")
    with atomic_file(out_dir / PROJECTOR_CONFIG_FILE) as tmp:
        tmp.write_text(
            "embeddings {\n"
            f'  tensor_name: "{tensor_name}"\n'
            f'  tensor_path: "{VECTORS_FILE}"\n'
            f'  metadata_path: "{METADATA_FILE}"\n'
            "}\n",
            encoding="utf-8",
        )
