"""Where each shard of the corpus lies in its file, so that workers read their own shard.

A shard is `shard_lines` non-empty lines, split as `vocabulary.iter_line_blocks` splits them (at
"\\n", "\\r\\n" or a lone "\\r", the terminator dropped; a byte-order mark at the start dropped). One
numpy pass over the bytes finds the byte range of every shard: no Python object per line, so this
serial part stays a small share of the stage. A compressed corpus is decompressed once, during that
pass, into a plain copy, since workers can only read byte ranges of a plain file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from w2vpipe.corpus import COMPRESSIONS, open_corpus
from w2vpipe.errors import PipelineError

SCAN_BYTES = 1 << 24
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
LF, CR = 10, 13


@dataclass(frozen=True)
class ShardRange:
    """Shard `index`: bytes `start` (its first line's) to `end` (past its last line's terminator) of the
    plain corpus file; its first line is non-empty line `first_line` of the corpus."""

    index: int
    start: int
    end: int
    first_line: int
    lines: int


@dataclass(frozen=True)
class CorpusShards:
    path: Path  # a plain UTF-8 file: the corpus itself or its decompressed copy
    shards: list[ShardRange]

    @property
    def lines(self) -> int:
        return sum(shard.lines for shard in self.shards)


def is_compressed(corpus: Path) -> bool:
    with corpus.open("rb") as probe:
        head = probe.read(6)
    return any(head.startswith(magic) for magic in COMPRESSIONS)


def find_shards(corpus: Path, shard_lines: int, decompressed: Path) -> CorpusShards:
    """The byte ranges of the corpus's shards; a compressed corpus is first written out to `decompressed`."""
    compressed = is_compressed(corpus)
    with open_corpus(corpus) as stream, (decompressed.open("wb") if compressed else contextlib.nullcontext()) as copy:
        shards = _scan(stream, shard_lines, copy)
    return CorpusShards(path=decompressed if compressed else corpus, shards=shards)


def _scan(stream: BinaryIO, shard_lines: int, copy: BinaryIO | None) -> list[ShardRange]:
    shards: list[ShardRange] = []
    base = 0  # file offset of data[0]
    line_start = shard_start = 0
    lines = 0  # non-empty lines so far
    carry = b""
    first = True
    while True:
        chunk = stream.read(max(SCAN_BYTES, len(BYTE_ORDER_MARK)) if first else SCAN_BYTES)
        if copy is not None:
            copy.write(chunk)
        data = carry + chunk
        at_end = not chunk
        if first and data.startswith(BYTE_ORDER_MARK):
            line_start = shard_start = len(BYTE_ORDER_MARK)
        first = False
        # A "\r" ending the read may be the first half of "\r\n": it waits for the next read.
        carry = b"\r" if data.endswith(b"\r") and not at_end else b""
        if carry:
            data = data[:-1]
        content_ends, line_ends = _terminators(np.frombuffer(data, dtype=np.uint8))
        content_ends += base
        line_ends += base
        starts = np.concatenate([[line_start], line_ends[:-1]])
        nonempty = content_ends > starts
        totals = lines + np.cumsum(nonempty)
        for last in np.flatnonzero(nonempty & (totals % shard_lines == 0)):
            end = int(line_ends[last])
            shards.append(ShardRange(len(shards), shard_start, end, len(shards) * shard_lines, shard_lines))
            shard_start = end
        if len(line_ends):
            lines, line_start = int(totals[-1]), int(line_ends[-1])
        base += len(data)
        if at_end:
            if base > line_start:  # a last line without a terminator
                lines += 1
            if lines > len(shards) * shard_lines:
                shards.append(ShardRange(len(shards), shard_start, base, len(shards) * shard_lines,
                                         lines - len(shards) * shard_lines))
            return shards


def _terminators(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(where each line's content ends, where its terminator ends), in order, for the lines that end
    inside `data`: at "\\n" (with a "\\r" before it, "\\r\\n") or at a "\\r" not followed by "\\n"."""
    line_feeds = np.flatnonzero(data == LF)
    returns = np.flatnonzero(data == CR)
    after_return = returns + 1
    alone = returns[(after_return >= len(data)) | (data[np.minimum(after_return, len(data) - 1)] != LF)]
    pair = (line_feeds > 0) & (data[np.maximum(line_feeds - 1, 0)] == CR)
    content_ends = (line_feeds - pair).astype(np.int64)
    line_ends = (line_feeds + 1).astype(np.int64)
    if not len(alone):  # the usual text: no sort needed
        return content_ends, line_ends
    order = np.argsort(np.concatenate([line_ends, alone + 1]), kind="stable")
    return np.concatenate([content_ends, alone])[order], np.concatenate([line_ends, alone + 1])[order]


def read_shard_lines(path: Path, shard: ShardRange) -> list[bytes]:
    """The non-empty lines of `shard`, read from its byte range of the plain corpus file."""
    with path.open("rb") as file:
        file.seek(shard.start)
        data = file.read(shard.end - shard.start)
    # bytes.splitlines splits at "\n", "\r\n" and "\r" only, as the text reader's newline="" does.
    lines = [line for line in data.splitlines() if line]
    if len(lines) != shard.lines:
        raise PipelineError(f"{path} changed while it was being vectorized (shard {shard.index} holds {len(lines):,} "
                            f"lines, not {shard.lines:,}): rerun the vectorize stage")
    return lines
