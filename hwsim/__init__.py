"""The simulator. Numba caches compiled kernels beside this package or in the user's cache
folder; when neither is writable, the cache goes to the system's temporary folder instead."""

import os
import sys
import tempfile


def _writable(path: str) -> bool:
    """Whether `path`, or the nearest folder above it that exists, takes new files."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.access(path, os.W_OK | os.X_OK)


def _numba_cache_fallback() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if _writable(os.path.dirname(__file__)) or _writable(os.path.join(user_cache, "numba")):
        return
    folder = os.path.join(tempfile.gettempdir(), f"spikeforge-numba-{os.getuid()}")
    os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # imported already: its config has read the environment
        sys.modules["numba"].config.CACHE_DIR = folder


_numba_cache_fallback()
