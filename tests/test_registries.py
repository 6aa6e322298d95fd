"""Extension points: a perturbation family and a retriever kind added from outside the package,
then run through the query-variation experiment like the built-in ones."""

from __future__ import annotations

import dataclasses

import pytest

from robustir.data import load_dataset
from robustir.embeddings import Embeddings
from robustir.experiments.query_variations import evaluate_variation
from robustir.models import ModelSpec
from robustir.perturb import FAMILY_NAMES, QueryGenerator, register_family, resolve_family
from robustir.retrievers import RETRIEVER_KINDS, EmbeddingRetriever, make_retriever, register_retriever
from toy_retrievers import letter_vectors


class ShoutGenerator(QueryGenerator):
    """Upper-cases the query: a variation that a lower-casing retriever cannot see."""

    name = "shout"

    def __call__(self, text, rng):
        return text.upper()


def _shouting(**options):
    return [ShoutGenerator()], {"case": "upper"}


class LetterCounts(EmbeddingRetriever):
    """Bag-of-letters vectors, case-insensitive: a retriever kind with no model at all."""

    def __init__(self, spec, **settings):
        self.spec = spec

    def encode_corpus(self, dataset):
        ids = list(dataset.corpus)
        texts = [dataset.corpus[i]["title"] + " " + dataset.corpus[i]["text"] for i in ids]
        return Embeddings(ids, letter_vectors(texts))

    def encode_queries(self, queries, dataset):
        return Embeddings(list(queries), letter_vectors(list(queries.values())))


LETTERS = ModelSpec("letters", "Letter counts", "", "user model", backend="letter_counts")


@pytest.fixture(autouse=True)
def registered():
    """Register the toy family and kind as a user would, and forget them after each test."""
    from robustir.perturb import variation

    register_family("shouting", "Shouting", aliases=("caps",))(_shouting)
    register_retriever("letter_counts")(LetterCounts)
    yield
    variation.FAMILIES.pop("shouting")
    variation.FAMILY_NAMES.pop("shouting")
    for name in ("shouting", "caps"):
        variation._ALIASES.pop(name)
    RETRIEVER_KINDS.pop("letter_counts")


def test_registered_names_are_accepted_everywhere():
    assert FAMILY_NAMES["shouting"] == "Shouting"
    assert resolve_family("CAPS") == "shouting"
    assert RETRIEVER_KINDS["letter_counts"] is LetterCounts
    assert isinstance(make_retriever(LETTERS), LetterCounts)
    with pytest.raises(ValueError, match="taken by"):
        register_family("other", "Other", aliases=("caps",))(lambda **o: ([], {}))
    with pytest.raises(ValueError, match="no retriever kind 'nope'"):
        make_retriever(dataclasses.replace(LETTERS, backend="nope"))


def test_a_toy_family_and_kind_run_through_the_query_variation_experiment(scifact_mini):
    data = load_dataset(scifact_mini, "test")
    run = evaluate_variation(make_retriever(LETTERS), data, "shouting", 5, n_resamples=50)
    assert run.variations.provenance["parameters"]["case"] == "upper"
    assert run.variations.unchanged_fraction == 0.0
    # case-insensitive letter counts: the upper-cased queries retrieve exactly the same lists
    assert run.perturbed.run == run.clean.run
    assert run.summary["drop_rate"] == 0.0 and run.summary["fraction_equal"] == 1.0


class PickyShout(ShoutGenerator):
    """Upper-cases queries without digits; keeps the others unchanged, as a fall-back."""

    name = "picky_shout"

    def __call__(self, text, rng):
        self.fell_back = any(c.isdigit() for c in text)
        return text if self.fell_back else super().__call__(text, rng)


def test_a_generators_fallbacks_are_counted_per_seed_up_to_the_summary(scifact_mini, tmp_path):
    from robustir.experiments.query_variations import summarise, write_variation_run
    from robustir.perturb import variation

    register_family("picky", "Picky")(lambda **options: ([PickyShout()], {}))
    try:
        data = load_dataset(scifact_mini, "test")
        with_digits = sum(any(c.isdigit() for c in q) for q in data.queries.values())
        assert 0 < with_digits < len(data.queries)
        retriever = make_retriever(LETTERS)
        for seed in (5, 27):
            run = evaluate_variation(retriever, data, "picky", seed, n_resamples=50)
            assert run.variations.provenance["fallbacks_per_generator"] == {"picky_shout": with_digits}
            assert run.summary["fallbacks"] == with_digits
            write_variation_run(run, tmp_path / "results", seed)
        row = summarise(tmp_path / "results", n_resamples=50).set_index("family").loc["picky"]
        assert row["fallbacks_per_seed"] == f"5: {with_digits}, 27: {with_digits}"
    finally:
        variation.FAMILIES.pop("picky")
        variation.FAMILY_NAMES.pop("picky")
        variation._ALIASES.pop("picky")
