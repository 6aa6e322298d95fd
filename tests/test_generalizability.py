"""The study's query-level models laid out as Tables 1-2 (robustir.stats.generalizability)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from robustir.stats.generalizability import query_level_tables

DATASETS = ["nq", "hotpotqa", "fiqa", "scifact", "fever", "climate-fever", "quora", "msmarco", "cranfield"]
SYSTEMS = ["bm25", "contriever", "qwen3"]
QUERY_TYPES = ["FACTOID", "REASON", "NOT-A-QUESTION"]


def query_level_table(seed: int = 5, queries: int = 8) -> pd.DataFrame:
    """Nine registry datasets (cranfield outside the study's maps) x 8 queries x 3 systems."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in DATASETS:
        shift = rng.normal(0, 0.08)
        for q in range(queries):
            query_type, effect = QUERY_TYPES[rng.integers(3)], rng.normal(0, 0.1)
            for s, system in enumerate(SYSTEMS):
                rows.append({
                    "query_id": f"{dataset}__test__{q}", "dataset_name": dataset, "Model": system,
                    "query_type": query_type,
                    "ndcg_10": float(np.clip(0.3 + 0.1 * s + shift + effect + rng.normal(0, 0.05), 0, 1)),
                })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables():
    return query_level_tables(query_level_table())


def test_three_models_and_the_quora_refit_with_the_studys_reference_levels(tables):
    assert list(tables.analyses) == ["query_type", "task_type", "corpus_type", "corpus_type_without_quora"]
    assert tables.skipped() == {}
    assert tables.analyses["query_type"].reference == {"Model": "contriever", "query_type": "FACTOID"}
    assert tables.analyses["task_type"].reference == {"Model": "contriever", "task_type": "Question Answering"}
    assert tables.analyses["corpus_type"].reference == {"Model": "contriever", "corpus_type": "Wikipedia"}
    rows_per_dataset = 8 * len(SYSTEMS)
    assert tables.analyses["query_type"].n_obs == 9 * rows_per_dataset
    assert tables.analyses["task_type"].n_obs == 8 * rows_per_dataset  # cranfield has no study task type
    assert "['cranfield'] have no task_type level" in tables.analyses["task_type"].notes[0]
    assert tables.analyses["corpus_type_without_quora"].n_obs == 7 * rows_per_dataset
    assert tables.analyses["corpus_type_without_quora"].notes[-1] == "quora removed (protocol §3.6 sanity refit)"


def test_cells_systems_anova_and_joint_tests(tables):
    task = tables.analyses["task_type"]
    levels = ["Question Answering", "Passage Retrieval", "Duplicate Question Retrieval", "Fact Checking"]
    assert list(task.cell_grid().index) == levels  # reference first, then the study's display order
    assert list(task.cell_grid().columns) == ["contriever", "bm25", "qwen3"]
    assert task.cell_means.columns.tolist() == ["Model", "task_type", "marginal_mean", "std_error", "df",
                                                "ci_lower", "ci_upper"]
    # A system's marginal mean weighs the task types equally, whatever their query counts.
    equal_weights = task.cell_grid().mean(axis=0)
    np.testing.assert_allclose(task.system_means.set_index("Model")["marginal_mean"], equal_weights[task.system_means.Model], rtol=1e-12)
    assert task.anova["term"].tolist() == ["Model", "task_type", "Model:task_type"]
    assert task.anova["num_df"].tolist() == [2, 3, 6]
    # Task type varies between datasets of equal size: the 8 - 4 df of the dataset means.
    assert task.anova.set_index("term").loc["task_type", "den_df"] == pytest.approx(4.0, rel=1e-6)
    assert task.joint_tests["term"].tolist() == ["Model", "task_type", "Model:task_type"]
    anova = tables.anova_rows()
    assert anova["analysis"].tolist() == [name for name in tables.analyses for _ in range(3)]


def test_asymptotic_means_keep_satterthwaite_anova():
    tables = query_level_tables(query_level_table(), means_ddf="asymptotic")
    corpus = tables.analyses["corpus_type"]
    assert tables.means_ddf == "asymptotic"
    assert np.isinf(corpus.cell_means["df"]).all() and np.isinf(corpus.joint_tests["df2"]).all()
    assert np.isfinite(corpus.anova["den_df"]).all()


def test_models_that_cannot_be_fitted_are_skipped_with_the_reason():
    table = query_level_table().drop(columns="query_type")
    table = table[table.dataset_name.isin(["scifact", "nq", "cranfield"])]
    tables = query_level_tables(table)
    skipped = tables.skipped()
    assert "no query_type labels" in skipped["query_type"] and "NF-CATS" in skipped["query_type"]
    assert skipped["task_type"].startswith("each of the 2 task_type levels holds a single dataset")
    assert "dataset variance cannot be told apart" in skipped["corpus_type"]
    one_level = query_level_tables(query_level_table()[lambda t: t.dataset_name.isin(["scifact", "cranfield"])])
    assert one_level.skipped()["task_type"] == (
        "task_type has a single level 'Fact Checking' in this table; a Model x task_type model needs at least two"
    )
    assert one_level.analyses["task_type"].cell_grid().empty


def test_reference_levels_fall_back_to_the_first_level_and_are_recorded():
    table = query_level_table()
    table = table[(table.Model != "contriever") & ~table.dataset_name.isin(["nq", "hotpotqa", "fiqa"])]
    task = query_level_tables(table).analyses["task_type"]
    # No contriever, no Question Answering: the first system and the first task type in the
    # study's display order.
    assert task.reference == {"Model": "bm25", "task_type": "Passage Retrieval"}
    assert task.fit.design.levels["task_type"][0] == "Passage Retrieval"


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks columns \['ndcg_10'\]"):
        query_level_tables(query_level_table().drop(columns="ndcg_10"))
