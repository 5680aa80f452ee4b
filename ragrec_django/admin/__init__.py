"""Back office: recommendation panels and the description review queue."""

from . import descriptions, evaluation, experiments, rankers, recommendations, search  # noqa: F401  (registers the admin pages)
