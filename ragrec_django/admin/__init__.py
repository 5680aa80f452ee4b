"""Back office: recommendation panels and the description review queue."""

from . import descriptions, evaluation, experiments, rankers, recommendations  # noqa: F401  (registers the admin pages)
