"""The vectorize stage's memory at 10^7 distinct tokens, with and without `vectorize.counting_limit`.

    python bench/counting_limit.py [--distinct 1e7] [--limits none 10000000 2000000]

The corpus: every one of `--distinct` tokens once (spelt as in bench/zipf_corpus.py, in a random
order), 20 to a line, each line also holding 5 words drawn from a Zipf law over 1,000 types: a
vocabulary at min count 5 beside millions of words seen once (the shape of a web crawl's tail). Per
limit: the stage's wall time, the peak RSS of its own process (where the counts are summed; sampled
every 50 ms), of its largest process (a worker may be: /usr/bin/time) and of its whole process tree
(sampled), how many tokens were counted, and the vocabulary at min count 5. Writes
bench/results/counting_limit-<time>.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import numpy as np
from _results import publish
from benchmark import project
from vectorize_scaling import timed
from zipf_corpus import spellings

LINE_TAIL_WORDS, LINE_COMMON_WORDS = 20, 5


def write_corpus(out: Path, distinct: int, seed: int = 0) -> int:
    """The corpus described above; its word count."""
    rng = np.random.default_rng(seed)
    tail = spellings(distinct)[rng.permutation(distinct)]
    common = np.char.add(b"w0", spellings(1000))  # a digit: never a tail token (letters only)
    cumulative = np.cumsum(1.0 / np.arange(1, 1001))
    cumulative /= cumulative[-1]
    lines = distinct // LINE_TAIL_WORDS
    with out.open("wb") as sink:
        for start in range(0, lines, 100_000):
            count = min(100_000, lines - start)
            unique = tail[start * LINE_TAIL_WORDS:(start + count) * LINE_TAIL_WORDS].reshape(count, -1)
            frequent = common[np.searchsorted(cumulative, rng.random((count, LINE_COMMON_WORDS)))]
            words = np.concatenate([unique, frequent], axis=1)
            sink.write(b"\n".join(b" ".join(line) for line in words) + b"\n")
    return lines * (LINE_TAIL_WORDS + LINE_COMMON_WORDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distinct", type=float, default=1e7)
    parser.add_argument("--limits", nargs="+", default=["none", "10000000", "2000000"])
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="w2v-counting-") as tmp:
        corpus = Path(tmp) / "distinct.txt"
        words = write_corpus(corpus, int(args.distinct))
        for limit in args.limits:
            root = Path(tmp) / f"limit-{limit}"
            root.mkdir()
            project(root, corpus, {"vectorize.counting_limit": None if limit == "none" else int(limit),
                                   "vectorize.vocab_size": None, "vectorize.min_count": 5})
            own_peak = [0.0]
            sampling = True

            def sample() -> None:  # the stage's own process: the newest python below this one
                while sampling:
                    try:
                        stages = [child for child in psutil.Process().children(recursive=True)
                                  if child.cmdline()[-2:] == ["pipeline", "vectorize"]]
                        own_peak[0] = max([own_peak[0], *(child.memory_info().rss / 2**20 for child in stages)])
                    except psutil.Error:  # a process gone between the listing and the reading
                        pass
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            wall, rss, tree_rss, out = timed([sys.executable, "-m", "pipeline", "vectorize"], root, env)
            sampling = False
            sampler.join()
            counted = re.search(r"vocabulary: ([0-9,]+) tokens of ([0-9,]+) distinct", out)
            pruned = "pruned" if "counting_limit" in out else "exact"
            rows.append(f"| {limit} | {wall:.1f} | {own_peak[0]:,.0f} | {rss:,.0f} | {tree_rss:,.0f} | "
                        f"{counted.group(2)} | {counted.group(1)} | {pruned} |")
            print(rows[-1], flush=True)
    publish("counting_limit", [
        f"# vectorize at {int(args.distinct):,} distinct tokens ({words:,} words, "
        f"min count 5), by vectorize.counting_limit", "",
        "| counting_limit | wall s | stage process peak RSS MiB | largest process peak RSS MiB | process tree peak RSS "
        "MiB | tokens counted at the end | vocabulary | counts |", "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows])


if __name__ == "__main__":
    main()
