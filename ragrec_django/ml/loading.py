"""Process-wide cache of loaded models: each configuration loads once per process.

Loading is thread-safe. After ``fork()`` (Celery prefork) the child gets a fresh
lock and forgets models placed on an accelerator, whose handles do not survive
the fork; CPU models inherited from the parent stay usable.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any

_models: dict[Hashable, Any] = {}
_devices: dict[Hashable, str] = {}
_lock = threading.RLock()
_fingerprints: dict[tuple[str, int, int], str] = {}


def load_once(key: Hashable, loader: Callable[[], Any], device_type: str = "cpu") -> Any:
    """Return the object cached under ``key``, calling ``loader()`` the first time only."""
    model = _models.get(key)
    if model is not None:
        return model
    with _lock:
        model = _models.get(key)
        if model is None:
            model = loader()
            _models[key] = model
            _devices[key] = device_type
        return model


def loaded_keys() -> list[Hashable]:
    """Keys of the models loaded in this process (for tests and diagnostics)."""
    return list(_models)


def clear_model_cache() -> None:
    """Drop every cached model so the next use loads it again."""
    with _lock:
        _models.clear()
        _devices.clear()


def file_fingerprint(path: str | os.PathLike, length: int = 16) -> str:
    """Return a sha256 prefix of a file's content, hashed once per process per file version."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    digest = _fingerprints.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(real, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = _fingerprints[key] = sha.hexdigest()
    return digest[:length]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    for key in [k for k, device_type in _devices.items() if device_type != "cpu"]:
        del _models[key]
        del _devices[key]


os.register_at_fork(after_in_child=_after_fork_in_child)
