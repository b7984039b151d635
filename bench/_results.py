"""Where benchmark tables go: bench/results/NAME-<UTC time>.md, and standard output."""

from __future__ import annotations

import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def publish(name: str, lines: list[str]) -> Path:
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M}.md"
    path.write_text(table)
    print(table)
    return path
