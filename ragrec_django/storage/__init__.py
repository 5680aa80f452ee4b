"""Storage: every SQL statement of the app (being split into modules; the public names are re-exported here)."""

from .generations import *  # noqa: F403
from .generations import _run_ann_query, _run_exact_query, _share_estimates  # noqa: F401
