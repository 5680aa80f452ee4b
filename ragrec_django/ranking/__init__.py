"""Pure ranking layer: fusion, diversity, serving rules and recency on plain candidates.

No Django and no database here: the services layer fetches candidates (pgvector, full text,
co-purchase counts) and passes them through these functions.
"""

from .candidates import Candidate, ranked, ranking_key
from .diversity import cap_per_category, group_variants, mmr, suppress_near_duplicates
from .fusion import reciprocal_rank_fusion, weighted_score_fusion
from .recency import decayed_popularity, recency_weighted_profile, time_decay_weight
from .rules import MAX_K_LIMIT, RulesError, ServingRules, apply_rules, filters_as_dict

__all__ = [
    "MAX_K_LIMIT",
    "Candidate",
    "RulesError",
    "ServingRules",
    "apply_rules",
    "cap_per_category",
    "decayed_popularity",
    "filters_as_dict",
    "group_variants",
    "mmr",
    "ranked",
    "ranking_key",
    "reciprocal_rank_fusion",
    "recency_weighted_profile",
    "suppress_near_duplicates",
    "time_decay_weight",
    "weighted_score_fusion",
]
