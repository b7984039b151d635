"""Where each shard of the corpus lies in its file, so that workers read their own shard.

A line is split as `vocabulary.iter_line_blocks` splits them (at "\\n", "\\r\\n" or a lone "\\r", the
terminator dropped; a byte-order mark at the start dropped), and a line of more than
`vocabulary.MAX_LINE_WORDS` (10,000) words is cut into pieces of that many words at whitespace, each
piece a line of its own, as gensim cuts its sentences (MAX_WORDS_IN_BATCH): a corpus of one enormous
line (text8, a dump without line ends) trains as sentences of bounded length, in shards of bounded
size. A shard is `shard_lines` non-empty lines, or fewer once it holds `SHARD_BYTES` of text: what a
task reads and holds in memory stays bounded whatever the corpus's lines. One numpy pass over the
bytes finds the byte range of every shard and every cut: no Python object per line, so this serial
part stays a small share of the stage, and the cuts are the same for any number of workers. Workers
read their byte ranges of a plain corpus themselves; a compressed one (gzip, bz2, xz) cannot be read
from the middle, so each later pass streams it again and hands every shard its text
(`CorpusShards.sources`): no decompressed copy on disk, and only the shards at work in memory.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from w2vpipe import vocabulary
from w2vpipe.corpus import COMPRESSIONS, open_corpus
from w2vpipe.errors import PipelineError

SCAN_BYTES = 1 << 24
# A shard closes at the first line end this many bytes of text past its start, even before `shard_lines`
# lines: a task holds its shard's words as Python objects, then its pairs. Measured on a one-line corpus of
# 300 MB (`/usr/bin/time -v`, largest process): vectorize 0.30 GiB, examples 0.17, train 1.09, against 3.3,
# 1.9 and 4.4 GiB when the line was one shard; at 100 MB, 0.29, 0.17 and 0.92 GiB.
SHARD_BYTES = 1 << 24
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
LF, CR = 10, 13


@dataclass(frozen=True)
class ShardRange:
    """Shard `index`: bytes `start` (its first line's) to `end` (past its last line's terminator, or its
    last piece's last word) of the plain corpus file; its first line is non-empty line `first_line` of
    the corpus."""

    index: int
    start: int
    end: int
    first_line: int
    lines: int
    text: bytes | None = field(default=None, repr=False, compare=False)  # those bytes, for a compressed corpus


@dataclass(frozen=True)
class CorpusShards:
    path: Path  # the corpus file
    shards: list[ShardRange]
    long_lines: int = 0  # lines of more than vocabulary.MAX_LINE_WORDS words, cut into pieces
    compressed: bool = False

    @property
    def lines(self) -> int:
        return sum(shard.lines for shard in self.shards)

    def sources(self) -> Collection[ShardRange]:
        """What a pass's tasks take: the shards, each with its text when the corpus is compressed."""
        return StreamedShards(self.path, self.shards) if self.compressed else self.shards


class StreamedShards(Collection[ShardRange]):
    """A compressed corpus's shards, each with its text, read as one stream from the start at every
    iteration."""

    def __init__(self, path: Path, shards: list[ShardRange]) -> None:
        self.path, self.shards = path, shards

    def __len__(self) -> int:
        return len(self.shards)

    def __contains__(self, item: object) -> bool:
        return item in self.shards

    def __iter__(self) -> Iterator[ShardRange]:
        with open_corpus(self.path) as stream:
            position = 0
            for shard in self.shards:
                _read_exactly(stream, shard.start - position)  # a byte-order mark before the first shard
                yield replace(shard, text=_read_exactly(stream, shard.end - shard.start))
                position = shard.end


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0 and (part := stream.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def is_compressed(corpus: Path) -> bool:
    with corpus.open("rb") as probe:
        head = probe.read(6)
    return any(head.startswith(magic) for magic in COMPRESSIONS)


def find_shards(corpus: Path, shard_lines: int) -> CorpusShards:
    """The byte ranges of the corpus's shards (in its decompressed text, when it is compressed)."""
    with open_corpus(corpus) as stream:
        shards, long_lines = _scan(stream, shard_lines)
    return CorpusShards(path=corpus, shards=shards, long_lines=long_lines, compressed=is_compressed(corpus))


def _scan(stream: BinaryIO, shard_lines: int) -> tuple[list[ShardRange], int]:
    """(the shards, how many lines were cut), reading `SCAN_BYTES` at a time. A "unit" below is a line, or a
    piece of a cut line: what the shards count as lines."""
    shards: list[ShardRange] = []
    base = 0  # file offset of data[0]
    line_start = unit_start = shard_start = 0
    lines = shard_first_line = 0  # non-empty units so far, and before the open shard
    line_words = 0  # words of the open line read so far
    after_break = True  # the last byte read ends a word (or nothing was read)
    long_lines = 0
    carry = b""
    first = True
    while True:
        chunk = stream.read(max(SCAN_BYTES, len(BYTE_ORDER_MARK)) if first else SCAN_BYTES)
        data = carry + chunk
        at_end = not chunk
        array = np.frombuffer(data, dtype=np.uint8)
        if first and data.startswith(BYTE_ORDER_MARK):
            line_start = unit_start = shard_start = len(BYTE_ORDER_MARK)
        first = False
        # A "\r" ending the read may be the first half of "\r\n": it waits for the next read.
        carry = b"\r" if data.endswith(b"\r") and not at_end else b""
        if carry:
            array = array[:-1]
        content_ends, line_ends = _terminators(array)
        cuts, line_words, cut_here = _cuts(array, line_start - base, line_ends, after_break, line_words)
        long_lines += cut_here
        if len(array) > max(line_start - base, 0):  # bytes past a byte-order mark
            after_break = bool(vocabulary.WORD_BREAKS[array[-1]])
        if len(line_ends):
            line_start = base + int(line_ends[-1])
        # Units end at line ends and at cuts (a cut lies inside its line, never on a line end).
        ends, content_ends = line_ends + base, content_ends + base
        if len(cuts):
            order = np.argsort(np.concatenate([line_ends, cuts]), kind="stable")
            ends = np.concatenate([ends, cuts + base])[order]
            content_ends = np.concatenate([content_ends, cuts + base])[order]
        starts = np.concatenate([[unit_start], ends[:-1]])
        closing = ends[content_ends > starts]  # a unit counts when it holds any byte
        totals = lines + np.arange(1, len(closing) + 1)
        while True:  # one step per shard: it closes at shard_lines units, or at the first unit end past SHARD_BYTES
            close = min(shard_first_line + shard_lines - lines - 1,
                        int(np.searchsorted(closing, shard_start + SHARD_BYTES)))
            if close >= len(closing):
                break
            shards.append(ShardRange(len(shards), shard_start, int(closing[close]), shard_first_line,
                                     int(totals[close]) - shard_first_line))
            shard_start, shard_first_line = int(closing[close]), int(totals[close])
        lines += len(closing)
        if len(ends):
            unit_start = int(ends[-1])
        base += len(array)
        if at_end:
            if base > unit_start:  # a last line without a terminator
                lines += 1
            if lines > shard_first_line:
                shards.append(ShardRange(len(shards), shard_start, base, shard_first_line, lines - shard_first_line))
            return shards, long_lines


def _cuts(array: np.ndarray, line_start: int, line_ends: np.ndarray, after_break: bool,
          line_words: int) -> tuple[np.ndarray, int, int]:
    """Where this read's pieces begin (every `MAX_LINE_WORDS`-th word of a line after its first), the words
    of the line left open at its end, and how many lines got their first cut here. `array` is the read's
    bytes, its first line begins at `line_start` (negative: in an earlier read, which ended a word if
    `after_break`, after `line_words` of its words), `line_ends` are where its lines end."""
    longest = int(np.diff(line_ends, prepend=line_start, append=len(array)).max())
    if longest < 2 * vocabulary.MAX_LINE_WORDS + 1:  # no line long enough to cut (the usual): the open line's words
        if len(line_ends):
            line_start, after_break, line_words = int(line_ends[-1]), True, 0
        breaks = vocabulary.WORD_BREAKS[array[max(line_start, 0):]]
        starts = np.count_nonzero(~breaks & np.concatenate([[after_break or line_start > 0], breaks[:-1]]))
        return np.zeros(0, dtype=np.int64), line_words + int(starts), 0
    offset = max(line_start, 0)  # past a byte-order mark
    breaks = vocabulary.WORD_BREAKS[array[offset:]]
    word_starts = offset + np.flatnonzero(~breaks & np.concatenate([[after_break or offset > 0], breaks[:-1]]))
    # Each word's place in its line: the first line's words number on from the reads before.
    first_word = np.concatenate([[-line_words], np.searchsorted(word_starts, line_ends)])
    place = np.arange(len(word_starts)) - first_word[np.searchsorted(line_ends, word_starts, "right")]
    cuts = word_starts[(place > 0) & (place % vocabulary.MAX_LINE_WORDS == 0)]
    return cuts, len(word_starts) - int(first_word[-1]), int(np.count_nonzero(place == vocabulary.MAX_LINE_WORDS))


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
    """The non-empty lines of `shard`: its text, or its byte range of the plain corpus file."""
    data = shard.text
    if data is None:
        with path.open("rb") as file:
            file.seek(shard.start)
            data = file.read(shard.end - shard.start)
    # bytes.splitlines splits at "\n", "\r\n" and "\r" only, as the text reader's newline="" does.
    lines = [line for line in data.splitlines() if line]
    if max(map(len, lines), default=0) > 2 * vocabulary.MAX_LINE_WORDS:  # a line long enough to cut: rare
        lines = [piece for line in lines for piece in vocabulary.cut_line(line)]
    if len(lines) != shard.lines:
        raise PipelineError(f"{path} changed while it was being vectorized (shard {shard.index} holds {len(lines):,} "
                            f"lines, not {shard.lines:,}): rerun the vectorize stage")
    return lines
