"""The README's references to the repository: every file or folder it names is there."""

from __future__ import annotations

import re

from conftest import REPO_ROOT

# A path inside the checkout, at the start of a token (not `word2vec-pipeline/word2vec`, a deployment's name).
REPOSITORY_PATH = re.compile(r"(?<![\w./-])((?:bench|docs|src|pipeline|recipes|tests|docker|\.ci)/[\w./-]*\w)")


def test_every_file_the_readme_names_exists() -> None:
    named = set(REPOSITORY_PATH.findall((REPO_ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(named) > 20  # the benchmark results, the design notes, the modules
    missing = sorted(path for path in named if not (REPO_ROOT / path).exists())
    assert not missing, f"README.md names files that are not in the checkout: {missing}"
