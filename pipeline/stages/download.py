"""Stage 1: fetch the corpus into data/corpus/ (mirror folder, local path or network)."""

from __future__ import annotations

from pipeline import layout
from w2vpipe.corpus import fetch_corpus, mirror_from_env
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params


def run(params: Params) -> str:
    with atomic_dir(layout.CORPUS_DIR) as out_dir:
        result = fetch_corpus(params.corpus.url, out_dir, sha256=params.corpus.sha256, mirror=mirror_from_env())
    checked = "checksum verified" if params.corpus.sha256 else "no checksum set"
    return (f"{layout.CORPUS_DIR / result.path.name}: {result.size:,} bytes from {result.source} "
            f"({checked}, sha256 {result.sha256[:12]}…)")
