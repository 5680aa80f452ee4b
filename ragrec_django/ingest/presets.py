"""Import presets by name: a data set's column mapping, filters and time zone (``ragrec_import --preset``)."""

from __future__ import annotations

from .importer import MappingError, Preset
from .online_retail import ONLINE_RETAIL

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (ONLINE_RETAIL,)}


def get_preset(name: str | None) -> Preset | None:
    """The preset called ``name`` (None for None); ``MappingError`` for an unknown name."""
    if name is None:
        return None
    if name not in PRESETS:
        raise MappingError("Unknown preset %r (known: %s)." % (name, ", ".join(sorted(PRESETS))))
    return PRESETS[name]
