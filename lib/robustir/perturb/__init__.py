"""Query variations: the study's five families of unintentional query perturbations.

Misspelling (six typo generators), reordering (a word swap), synonymizing (WordNet and
embedding-neighbour swaps), paraphrasing (back-translation and T5, model hub only) and
naturalizing (stop-word removal), seeded, one variant per query, saved with provenance
(protocol §4). Used in the book chapter "Query variations".
"""

from robustir.perturb.family import Family, FamilyUnavailable, QueryGenerator
from robustir.perturb.stopwords import ENGLISH_STOPWORDS
from robustir.perturb.variation import (
    FAMILIES,
    FAMILY_NAMES,
    RNG_SCOPES,
    STUDY_SEEDS,
    FamilyStatus,
    QueryVariation,
    VariationSet,
    build_family,
    family_status,
    generate_variations,
    provenance_path,
    query_rng,
    register_family,
    resolve_family,
)
from robustir.perturb.words import query_words

__all__ = [
    "ENGLISH_STOPWORDS", "FAMILIES", "FAMILY_NAMES", "RNG_SCOPES", "STUDY_SEEDS", "Family", "FamilyStatus",
    "FamilyUnavailable", "QueryGenerator", "QueryVariation", "VariationSet", "build_family",
    "family_status", "generate_variations", "provenance_path", "query_rng", "query_words",
    "register_family", "resolve_family",
]
