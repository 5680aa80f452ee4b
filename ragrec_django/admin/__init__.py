"""Back office: recommendation panels and the description review queue."""

from . import descriptions, recommendations  # noqa: F401  (registers the ModelAdmins)
