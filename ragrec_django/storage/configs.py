"""Serving configurations saved in the admin (``ServingConfig``)."""

from __future__ import annotations

from ..models import ServingConfig
from . import rows

#: Marks a configuration that has no row (the settings' ``SERVING_CONFIGS`` then decide).
NO_ROW = object()


def serving_config_rules(name: str):
    """The rules (a dict, or None) of the saved configuration ``name``; ``NO_ROW`` when none is saved."""
    found = rows.values(ServingConfig, ("rules",), "name = %s", [name])
    return found[0][0] if found else NO_ROW
