"""Clean vs perturbed evaluation on a small SciFact subset: the corpus is encoded once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from robustir.data import load_dataset
from robustir.experiments.query_variations import EXPERIMENT, evaluate_variation, variant_file, write_variation_run
from robustir.perturb import VariationSet
from robustir.results import ResultStore
from robustir.retrievers import make_retriever

pytestmark = pytest.mark.slow  # MiniLM over the 300-document SciFact subset (shared session cache)


@pytest.fixture(scope="module")
def mini_run(scifact_mini, embedding_cache, tmp_path_factory):
    data = load_dataset(scifact_mini, "test")
    retriever = make_retriever("minilm", cache=embedding_cache, progress=False)
    encoder = retriever.encoder
    variants = tmp_path_factory.mktemp("variants")
    run = evaluate_variation(retriever, data, "ordering", 27, variants_dir=variants,
                             n_resamples=200)
    return data, retriever, run, variants


def test_drop_rate_and_stability_agree_with_the_per_query_scores(mini_run):
    data, _, run, _ = mini_run
    clean = run.clean.per_query["nDCG@10"]
    perturbed = run.perturbed.per_query["nDCG@10"].reindex(clean.index)
    assert run.summary["drop_rate"] == pytest.approx((clean.mean() - perturbed.mean()) / clean.mean())
    assert run.summary["drop_rate_ci_low"] <= run.summary["drop_rate"] <= run.summary["drop_rate_ci_high"]
    # the shares counted from the per-query scores: a drop is a lower perturbed score
    delta = (perturbed - clean).to_numpy()
    assert run.summary["fraction_drop"] == pytest.approx(np.mean(delta < -1e-12))
    assert run.summary["fraction_rise"] == pytest.approx(np.mean(delta > 1e-12))
    assert run.summary["fraction_equal"] == pytest.approx(np.mean(np.abs(delta) <= 1e-12))
    # an unchanged query gets the same ranking: full overlap and no score change
    for qid, variation in run.variations.variations.items():
        if not variation.changed:
            assert run.stability.loc[qid, "Jaccard@10"] == 1.0
            assert run.stability.loc[qid, "RBO@100"] == pytest.approx(1.0)
            assert perturbed[qid] == clean[qid]
    assert set(run.stability.index) == set(data.queries)


def test_the_corpus_is_encoded_once_and_only_queries_again(mini_run):
    data, retriever, _, variants = mini_run
    encoder = retriever.encoder
    before = encoder.stats.texts_encoded
    again = evaluate_variation(retriever, data, "ordering", 27, variants_dir=variants,
                               n_resamples=50)
    # the variants come from the shared file, the corpus and both query sets from the cache
    assert encoder.stats.texts_encoded == before
    assert again.variations.queries == VariationSet.load(
        variant_file(variants, data.key, "test", "ordering", 27)).queries


def test_written_entries_hold_clean_and_perturbed_results(mini_run, tmp_path):
    _, _, run, _ = mini_run
    store = ResultStore(tmp_path / "results")
    clean_entry, entry = write_variation_run(run, store, seed=27)
    assert clean_entry.parts[-2:] == ("none", "seed-none") and entry.parts[-2:] == ("ordering", "seed-27")
    summaries = store.read_summaries(EXPERIMENT).set_index("variant")
    assert summaries.loc["ordering", "drop_rate"] == pytest.approx(run.summary["drop_rate"])
    assert summaries.loc["ordering", "unchanged_fraction"] == run.variations.unchanged_fraction
    per_query = store.read_per_query(EXPERIMENT, variant="ordering")
    changed = per_query[per_query.measure == "changed"].set_index("query_id")["value"]
    assert changed.sum() == sum(v.changed for v in run.variations.variations.values())
    delta = per_query[per_query.measure == "delta_nDCG@10"]["value"].to_numpy()
    assert np.mean(delta) == pytest.approx(-run.summary["drop_rate"] * run.summary["clean"])
    params = json.loads((entry / "params.json").read_text())
    assert params["variations"]["family"] == "ordering" and params["seed"] == 27


def test_aggregate_gives_mean_and_population_std_over_seeds(mini_run, tmp_path):
    from robustir.experiments.query_variations import summarise

    data, retriever, run, variants = mini_run
    other = evaluate_variation(retriever, data, "ordering", 5, clean=run.clean,
                               variants_dir=variants, n_resamples=50)
    store = ResultStore(tmp_path / "results")
    write_variation_run(run, store, seed=27)
    write_variation_run(other, store, seed=5)
    per_query_seeding = evaluate_variation(retriever, data, "ordering", 5, clean=run.clean,
                                           rng_scope="query", n_resamples=50)
    _, entry = write_variation_run(per_query_seeding, store, seed=5)
    assert entry.parts[-2:] == ("ordering_rng-query", "seed-5")  # kept apart from the study's runs
    table = summarise(store, n_resamples=100)
    assert sorted(table["rng_scope"]) == ["query", "stream"]
    row = table.set_index("rng_scope").loc["stream"]
    rates = np.array([run.summary["drop_rate"], other.summary["drop_rate"]])
    assert row["n_seeds"] == 2
    assert row["drop_rate_mean"] == pytest.approx(rates.mean())
    assert row["drop_rate_std"] == pytest.approx(abs(rates[0] - rates[1]) / 2)  # ddof = 0
    expected_unchanged = (run.variations.unchanged_fraction + other.variations.unchanged_fraction) / 2
    assert row["unchanged_fraction"] == pytest.approx(expected_unchanged)
    # the clean reference is required: without it the aggregate refuses instead of using 0
    import shutil

    shutil.rmtree(store.root / EXPERIMENT / "minilm" / data.key / "none")
    with pytest.raises(ValueError, match="no clean reference"):
        summarise(store)
