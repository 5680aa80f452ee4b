"""Back office: recommendation panels and the description review queue."""

from . import (  # noqa: F401  (registers the admin pages)
    conversations,
    descriptions,
    evaluation,
    experiments,
    rankers,
    recommendations,
    search,
)
