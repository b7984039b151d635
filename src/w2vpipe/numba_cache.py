"""Where numba keeps compiled code: keyed by the source file's content, not by its path and time.

Numba's own locators key the cache by the source file's path and modification time, so every copy of
the checkout (each `dvc exp run --temp`, a Prefect run, a test's scratch project) would compile the
training kernel again (~10 s). `w2vpipe.cpu_sgd` names this locator first in NUMBA_CACHE_LOCATOR_CLASSES
(numba's setting for it), before numba's own.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from numba.core import config
from numba.core.caching import UserProvidedCacheLocator


class SourceContentLocator(UserProvidedCacheLocator):
    """Compiled code under NUMBA_CACHE_DIR in a folder named by the source's sha256, valid while the
    source's bytes are the same, wherever the file lies."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        super().__init__(py_func, py_file)
        self._digest = hashlib.sha256(Path(py_file).read_bytes()).hexdigest()
        self._cache_path = os.path.join(config.CACHE_DIR, f"{Path(py_file).stem}-{self._digest[:16]}")

    def get_source_stamp(self) -> str:
        return self._digest
