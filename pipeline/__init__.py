"""Orchestration of the w2vpipe library: stage entry points (run by DVC), MLflow tracking and
the Prefect flow. No word2vec logic lives here."""

import sys
from pathlib import Path

# Run the library of the checkout this package lives in, not the one `pip install -e` points at: a
# DVC experiment runs the stages in a temporary copy of the repository, with that commit's code.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
