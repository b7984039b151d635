"""Orchestration of the w2vpipe library: stage entry points (run by DVC), MLflow tracking and
the Prefect flow. No word2vec logic lives here."""

import sys
from pathlib import Path

# Run the library of the checkout this package lives in, not the one `pip install -e` points at: a
# DVC experiment runs `python -m pipeline STAGE` in a temporary copy of the repository (.dvc/tmp/exps),
# where this package is the copy's (the working directory comes first on sys.path) but w2vpipe would be
# the installed checkout's. Installed from a wheel, no src/ lies beside this package and the installed
# w2vpipe is the one.
_CHECKOUT_LIBRARY = Path(__file__).resolve().parent.parent / "src"
if (_CHECKOUT_LIBRARY / "w2vpipe").is_dir():
    sys.path.insert(0, str(_CHECKOUT_LIBRARY))
