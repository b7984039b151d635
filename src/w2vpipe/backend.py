"""Importing Keras without paying for what this library never uses."""

from __future__ import annotations

import sys
from types import ModuleType


def import_keras() -> ModuleType:
    """`import keras`, minus its scikit-learn import.

    Keras imports scikit-learn (0.4 s on 2 cores) only for its scikit-learn wrappers, which this
    library never uses, and carries on without them when the import fails. A `None` entry in
    `sys.modules` makes that import fail at once; it is removed again right after, so scikit-learn
    stays importable for everything else.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    block = "sklearn" not in sys.modules
    if block:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        import keras
    finally:
        if block:
            del sys.modules["sklearn"]
    return keras
