"""Deferred imports of heavy dependencies (torch, ...).

Django's system checks build every configured encoder, so importing the ml
modules and constructing an encoder must not import torch (seconds of start-up
for every ``manage.py`` command). Modules bind such dependencies as
``torch = LazyModule("torch")``; the real import happens on first attribute
access, which only code that loads or runs a model reaches.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands in for the module ``name`` and imports it on first attribute access."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        # Only reached for the module's attributes: _name and _module are slots.
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return "<lazy module %r%s>" % (self._name, "" if self._module is None else " (imported)")
