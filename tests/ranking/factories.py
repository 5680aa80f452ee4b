"""Small hand-made candidates for the ranking tests."""

import numpy as np

from ragrec_django.ranking import Candidate


def cand(item_id, score=0.0, vector=None, **fields):
    """A candidate; ``vector`` may be a plain list."""
    return Candidate(item_id, score, vector=None if vector is None else np.asarray(vector, dtype=float), **fields)


def ids(candidates):
    return [c.item_id for c in candidates]
