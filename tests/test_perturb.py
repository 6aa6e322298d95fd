"""Invariants of the misspelling, reordering and naturalizing generators (protocol §4.2–§4.3)."""

from __future__ import annotations

import json
import random
import string
from collections import Counter

import pytest
from robustir.perturb import (
    ENGLISH_STOPWORDS,
    Family,
    VariationSet,
    generate_variations,
    query_rng,
    query_words,
    resolve_family,
)
from robustir.perturb.naturalize import StopwordRemoval
from robustir.perturb.reorder import WordInnerSwap
from robustir.perturb.stopwords import ENGLISH_STOPWORD_SET
from robustir.perturb.typos import (
    QWERTY_NEIGHBOURS,
    FixedQwertySubstitution,
    NeighbouringCharacterSwap,
    QwertySubstitution,
    RandomCharacterDeletion,
    RandomCharacterInsertion,
    RandomCharacterSubstitution,
    keyboard_neighbours,
    misspelling_generators,
)

QUERIES = {
    "q1": "what is the role of protein kinase in cancer cells",
    "q2": "The effect of vitamin D on bone density in older adults?",
    "q3": "does aspirin reduce the risk of stroke",
    "q4": "Microglia activation drives neurodegeneration in mouse models of Alzheimer's disease.",
    "q5": "how do vaccines train the immune system",
    "q6": "Sleep deprivation impairs memory consolidation",
}
SEEDS = (1999, 5, 27, 2016, 2026)


def changed_words(original: str, variant: str) -> list[tuple[str, str]]:
    """Pairs (old, new) of the words that differ; the word count must be unchanged."""
    before, after = [w.text for w in query_words(original)], [w.text for w in query_words(variant)]
    assert len(before) == len(after), (original, variant)
    return [(a, b) for a, b in zip(before, after) if a != b]


def is_adjacent_swap(old: str, new: str) -> bool:
    return len(old) == len(new) and any(
        old[:i] + old[i + 1] + old[i] + old[i + 2 :] == new for i in range(len(old) - 1)
    )


def substitution(old: str, new: str) -> tuple[str, str] | None:
    """The (old, new) character of a one-character substitution, or None."""
    if len(old) != len(new):
        return None
    diffs = [(a, b) for a, b in zip(old, new) if a != b]
    return diffs[0] if len(diffs) == 1 else None


def inserted_at(old: str, new: str) -> int | None:
    for i in range(len(old)):  # never after the last character
        if new[:i] + new[i + 1 :] == old:
            return i
    return None


EDIT_CHECKS = {
    NeighbouringCharacterSwap: is_adjacent_swap,
    RandomCharacterSubstitution: lambda o, n: (s := substitution(o, n)) and s[1] in string.ascii_letters,
    QwertySubstitution: lambda o, n: (s := substitution(o, n)) and s[1] in keyboard_neighbours(s[0]),
    RandomCharacterDeletion: lambda o, n: len(n) == len(o) - 1 and any(o[:i] + o[i + 1 :] == n for i in range(len(o))),
    RandomCharacterInsertion: lambda o, n: len(n) == len(o) + 1 and inserted_at(o, n) is not None
    and n[inserted_at(o, n)] in string.ascii_letters,
    FixedQwertySubstitution: lambda o, n: (s := substitution(o, n)) and s[1] in keyboard_neighbours(s[0]),
}


@pytest.mark.parametrize("generator_class", list(EDIT_CHECKS), ids=lambda c: c.__name__)
def test_typo_changes_one_eligible_word_by_its_own_edit(generator_class):
    generator = generator_class()
    check = EDIT_CHECKS[generator_class]
    edits = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        for text in QUERIES.values():
            variant = generator(text, rng)
            diff = changed_words(text, variant)
            assert len(diff) <= 1, (text, variant)  # under 20 words: one word at most
            if diff:
                old, new = diff[0]
                assert old not in ENGLISH_STOPWORD_SET and len(old) >= 3
                assert check(old, new), (generator.name, old, new)
                edits += 1
    assert edits >= 20  # of 30 (query, seed) pairs: the edit almost always happens


def test_typo_never_touches_stopwords_or_short_words():
    text = "is it an ox or a yak"  # every word is a stop-word or shorter than 3 letters, but "yak"
    for generator in misspelling_generators():
        for seed in SEEDS:
            diff = changed_words(text, generator(text, random.Random(seed)))
            assert [old for old, _ in diff] in ([], ["yak"])
    assert misspelling_generators()[0]("is it an ox", random.Random(0)) == "is it an ox"


def test_stopword_check_is_case_sensitive_as_in_textattack():
    # "The" is not in the lower-case list, so the study's constraint lets it be edited.
    assert RandomCharacterDeletion()("The", random.Random(1)) != "The"
    assert RandomCharacterDeletion()("the", random.Random(1)) == "the"


def test_neighbouring_swap_of_equal_letters_is_discarded():
    # "aaa" only yields swaps equal to itself: no candidate, the query stays unchanged
    assert NeighbouringCharacterSwap()("aaa", random.Random(3)) == "aaa"


def test_qwerty_without_a_neighbour_anywhere_keeps_the_query_and_the_fixed_variant_edits():
    assert QwertySubstitution()("2024 1999", random.Random(0)) == "2024 1999"
    variant = FixedQwertySubstitution()("2024 1999", random.Random(0))
    (old, new), = changed_words("2024 1999", variant)
    assert substitution(old, new)[1] in QWERTY_NEIGHBOURS  # a lower-case key of the table


def qwerty_variants(queries: dict[str, str], seeds) -> list:
    """QWERTY variants drawn through the family loop of protocol §4.2, where a generator without
    a candidate for a query contributes the query itself."""
    family = Family("mispelling", "Misspelling", (QwertySubstitution(),))
    return [variant for seed in seeds
            for variant in generate_variations(queries, family, seed, dataset="toy").variations.values()]


@pytest.mark.parametrize("text, awkward", [
    ("when did the 2018 world cup start", "2018"),  # the case: a digit
    ("risk factors for Alzheimer's disease", "Alzheimer's"),  # an apostrophe
    ("does e-mail reduce productivity", "e-mail"),  # a hyphen
    ("why is naïve bayes naïve", "naïve"),  # a non-ASCII letter
])
def test_qwerty_skips_only_the_word_whose_drawn_character_has_no_neighbour(text, awkward):
    # TextAttack 0.3.10: that word has no candidate, another eligible word is still edited.
    # When the whole generator failed instead, the query stayed unchanged whenever a draw in
    # `awkward` hit the digit or symbol: in every draw for "2018". Now it never does.
    variants = qwerty_variants({"q": text}, range(300))
    assert all(v.changed for v in variants)
    edited = Counter()
    for variant in variants:
        for old, new in changed_words(text, variant.text):
            character, replacement = substitution(old, new)
            assert replacement in keyboard_neighbours(character)
            edited[old] += 1
    assert (awkward in edited) == (awkward != "2018")  # its letters can still be edited


def test_qwerty_leaves_almost_no_scifact_query_unchanged(shared_data):
    from robustir.data import load_dataset

    queries = load_dataset(shared_data / "scifact", "test").queries
    variants = qwerty_variants(queries, SEEDS)
    # the whole-query failure left 18.8% of the 300 × 5 draws unchanged; per word: none
    assert sum(not v.changed for v in variants) / len(variants) < 0.01


def test_qwerty_keeps_upper_case():
    assert keyboard_neighbours("Q") == "WAS" and keyboard_neighbours("5") == ""
    variant = QwertySubstitution()("XXX", random.Random(0))
    assert substitution("XXX", variant)[1] in "SDZC"


def test_generator_without_a_candidate_contributes_the_original_query():
    # every eligible character is a digit: QWERTY has no candidate, the other generators edit
    runs = [generate_variations({"q": "2024 1999"}, "mispelling", s, dataset="toy") for s in range(40)]
    variants = [r.variations["q"] for r in runs]
    qwerty = [v for v in variants if v.generator == "qwerty_substitution"]
    assert qwerty and all(not v.changed and v.text == "2024 1999" for v in qwerty)
    assert all(v.changed for v in variants if v.generator != "qwerty_substitution")


def test_long_queries_change_a_tenth_of_their_words():
    words = [f"word{i:03d}" for i in range(25)]  # 25 distinct eligible words: 2 steps
    text = " ".join(words)
    for seed in SEEDS:
        diff = changed_words(text, RandomCharacterSubstitution()(text, random.Random(seed)))
        assert 1 <= len(diff) <= 2  # a later step may re-edit the same word


def test_500_word_query_is_handled():
    text = " ".join(f"term{i}" for i in range(500))
    diff = changed_words(text, RandomCharacterDeletion()(text, random.Random(7)))
    assert 40 <= len(diff) <= 50  # n_swap = 50, re-edits allowed


def test_non_ascii_text_is_edited_with_ascii_letters():
    text = "naïve café résumé über"
    for seed in SEEDS:
        diff = changed_words(text, RandomCharacterInsertion()(text, random.Random(seed)))
        assert len(diff) == 1
        old, new = diff[0]
        assert new[inserted_at(old, new)] in string.ascii_letters
    # accented letters have no keyboard neighbours: no candidate, the query stays
    assert QwertySubstitution()("éèà", random.Random(0)) == "éèà"


def test_reordering_swaps_two_words_and_keeps_the_multiset():
    for seed in SEEDS:
        for text in QUERIES.values():
            variant = WordInnerSwap()(text, random.Random(seed))
            before, after = [w.text for w in query_words(text)], [w.text for w in query_words(variant)]
            assert Counter(before) == Counter(after)
            positions = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
            assert len(positions) == 2 and before[positions[0]] == after[positions[1]]


def test_reordering_leaves_one_word_queries_and_identical_words_unchanged():
    assert WordInnerSwap()("insulin?", random.Random(0)) == "insulin?"
    assert WordInnerSwap()("go go", random.Random(0)) == "go go"


def test_reordering_counts_the_swap_of_two_identical_words_as_a_candidate():
    # 7 words, "the" twice: 7 candidates (one partner drawn per word), chosen uniformly; the
    # swap of the two "the" is drawn from index 2 (partner 5, probability 1/6) or index 5
    # (partner 2, 1/6), so P(unchanged) = (1/7)(1/6 + 1/6) = 1/21 = 4.76%. Dropping that swap
    # (the old behaviour) gives 0.
    text, n = "what is the name of the song", 21_000
    unchanged = sum(WordInnerSwap()(text, random.Random(seed)) == text for seed in range(n))
    expected = 1 / 21
    assert abs(unchanged / n - expected) < 4 * (expected * (1 - expected) / n) ** 0.5


def test_naturalizing_removes_stopwords_and_lower_cases():
    assert StopwordRemoval()("What is the role of p53 in Cancer?", random.Random(0)) == "role p53 cancer?"
    result = generate_variations({"a": "What is the", "b": "Is p53 a gene"}, "naturality", 1999, dataset="toy")
    assert result.queries == {"a": "", "b": "p53 gene"}
    assert result.provenance["n_empty"] == 1 and result.unchanged_fraction == 0.0


def test_naturalizing_does_not_depend_on_the_seed():
    runs = {s: generate_variations(QUERIES, "naturality", s, dataset="toy").queries for s in SEEDS}
    assert all(r == runs[1999] for r in runs.values())


def test_stopwords_only_query_is_left_unchanged_by_word_edits():
    result = generate_variations({"q": "what is the of and"}, "mispelling", 1999, dataset="toy")
    assert not result.variations["q"].changed and result.unchanged_fraction == 1.0


def test_empty_query_is_rejected_with_its_id():
    with pytest.raises(ValueError, match="query 'q7' is empty"):
        generate_variations({"q1": "fine", "q7": "   "}, "ordering", 5, dataset="toy")


def test_same_seed_same_output_and_different_seeds_differ():
    for family in ("mispelling", "ordering"):
        first = generate_variations(QUERIES, family, 1999, dataset="toy").queries
        assert generate_variations(QUERIES, family, 1999, dataset="toy").queries == first
        assert generate_variations(QUERIES, family, 2026, dataset="toy").queries != first


def test_query_rng_scope_makes_a_variant_independent_of_other_queries():
    full = generate_variations(QUERIES, "mispelling", 27, dataset="toy", rng_scope="query")
    alone = generate_variations({"q4": QUERIES["q4"]}, "mispelling", 27, dataset="toy", rng_scope="query")
    assert alone.variations["q4"] == full.variations["q4"]
    assert query_rng(27, "toy", "q4").random() == query_rng(27, "toy", "q4").random()
    assert query_rng(27, "toy", "q4").random() != query_rng(27, "other", "q4").random()
    # the study's stream: dropping the first query shifts the draws of the others
    stream = generate_variations(QUERIES, "mispelling", 27, dataset="toy").queries
    shifted = generate_variations(dict(list(QUERIES.items())[1:]), "mispelling", 27, dataset="toy").queries
    assert any(shifted[q] != stream[q] for q in shifted)
    with pytest.raises(ValueError, match="rng_scope"):
        generate_variations(QUERIES, "ordering", 5, dataset="toy", rng_scope="global")


def test_family_names_resolve():
    assert resolve_family("Misspelling") == resolve_family("mispelling") == "mispelling"
    assert resolve_family("naturalizing") == "naturality"
    with pytest.raises(ValueError, match="choose one of mispelling, ordering"):
        resolve_family("typos")


def test_stopword_list_is_the_frozen_179_word_list():
    assert len(ENGLISH_STOPWORDS) == 179 == len(set(ENGLISH_STOPWORDS))
    assert all(w == w.lower() for w in ENGLISH_STOPWORDS)
    assert {"i", "ain", "mightn't", "should've"} <= ENGLISH_STOPWORD_SET
    assert not {"he'd", "i'm", "they're"} & ENGLISH_STOPWORD_SET


def test_variation_set_round_trip_and_provenance(tmp_path):
    result = generate_variations(QUERIES, "mispelling", 2016, dataset="toy", split="dev")
    path = tmp_path / "variants.jsonl"
    sidecar = result.save(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["_id"] for line in lines] == list(QUERIES)
    assert set(lines[0]) == {"_id", "text", "original", "generator", "changed"}
    provenance = json.loads(sidecar.read_text())
    assert provenance["family"] == "mispelling" and provenance["seed"] == 2016
    assert provenance["split"] == "dev" and provenance["rng_scope"] == "stream"
    assert provenance["robustir_version"] and len(provenance["generators"]) == 6
    assert sum(provenance["chosen_per_generator"].values()) == len(QUERIES)
    loaded = VariationSet.load(path)
    assert loaded.variations == result.variations and loaded.provenance == provenance


def test_malformed_variant_file_names_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"_id": "q1", "text": "a", "original": "a", "generator": "g", "changed": false}\n'
                    '{"_id": "q2", "text": "b", "original": "b", "changed": false}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'generator'"):
        VariationSet.load(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not valid JSON"):
        VariationSet.load(path)


def test_variant_file_of_an_older_generator_revision_is_not_reused(tmp_path):
    from pathlib import Path

    from robustir.data import Dataset
    from robustir.experiments.query_variations import load_or_generate_variations, variant_file

    data = Dataset(name="toy", split="test", path=Path("toy"), corpus={}, queries=QUERIES,
                   qrels={}, checksum="")
    made = load_or_generate_variations(data, "mispelling", 5, variants_dir=tmp_path)
    assert load_or_generate_variations(data, "mispelling", 5, variants_dir=tmp_path).queries == made.queries
    # a file made before per-word QWERTY failures (no revision recorded) would carry their bias
    path = variant_file(tmp_path, "toy", "test", "mispelling", 5)
    del made.provenance["generators_revision"]
    made.save(path)
    with pytest.raises(ValueError, match=r"'generators_revision': None.*delete it to regenerate"):
        load_or_generate_variations(data, "mispelling", 5, variants_dir=tmp_path)


def test_the_families_reuse_only_the_minilm_they_would_load_themselves():
    """A bfloat16 MiniLM (or one cut shorter) encodes differently: sharing it would make the
    synonym and paraphrase variants depend on which system's job made them first."""
    from robustir.experiments.query_variations import _family_encoder
    from robustir.models import get_model_spec
    from robustir.retrievers import TransformerRetriever

    minilm = get_model_spec("minilm")
    default = TransformerRetriever(minilm, progress=False)
    assert _family_encoder(default) is default.encoder
    assert _family_encoder(TransformerRetriever(minilm, dtype="bfloat16", progress=False)) is None
    assert _family_encoder(TransformerRetriever(minilm, max_length=128, progress=False)) is None
    assert _family_encoder(TransformerRetriever(get_model_spec("minilm_cls"), progress=False)) is None
    assert _family_encoder(None) is None
