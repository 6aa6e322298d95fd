"""The results store: layout, atomic writes, the finished test, and reading back."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from robustir.results import (
    ResultStore,
    ResultStoreError,
    is_finished,
    params_hash,
    per_query_long,
)

PARAMS = {"model": "minilm", "dataset": "scifact", "top_k": 1000, "prompt": ""}


def _per_query(values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"query_id": list(values), "measure": "nDCG@10", "value": list(values.values())})


def test_params_hash_ignores_key_order_and_sees_values():
    reordered = dict(reversed(list(PARAMS.items())))
    assert params_hash(PARAMS) == params_hash(reordered)
    assert params_hash(PARAMS) != params_hash({**PARAMS, "top_k": 100})
    assert len(params_hash(PARAMS)) == 16


def test_params_hash_rejects_non_json_values(tmp_path):
    with pytest.raises(ResultStoreError, match="str\\(\\)"):
        params_hash({"data_root": tmp_path})


def test_entry_dir_layout(tmp_path):
    store = ResultStore(tmp_path)
    path = store.entry_dir("evaluate", "minilm", "scifact", "clean", 1999)
    assert path == tmp_path / "evaluate" / "minilm" / "scifact" / "clean" / "seed-1999"
    assert store.entry_dir("evaluate", "bm25", "scifact", "clean", None).name == "seed-none"


@pytest.mark.parametrize("field,value", [("model", "a/b"), ("variant", ""), ("dataset", ".tmp-x")])
def test_entry_dir_rejects_unsafe_names(tmp_path, field, value):
    keys = {"experiment": "evaluate", "model": "m", "dataset": "d", "variant": "v", "seed": 1}
    keys[field] = value
    with pytest.raises(ResultStoreError, match=field):
        ResultStore(tmp_path).entry_dir(**keys)


def test_write_then_read_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    entry = store.entry_dir("evaluate", "minilm", "scifact", "clean", None)
    per_query = _per_query({"0001": 1.0, "2": 0.5, "NA": 0.0})
    store.write_entry(entry, PARAMS, per_query, {"metrics": {"nDCG@10": 0.5}})

    assert is_finished(entry, PARAMS)
    assert not is_finished(entry, {**PARAMS, "top_k": 10})
    assert json.loads((entry / "params.json").read_text()) == PARAMS
    summary = json.loads((entry / "summary.json").read_text())
    assert summary["n_queries"] == 3 and summary["params_hash"] == params_hash(PARAMS)

    back = store.read_per_query("evaluate")
    # Leading zeros and the literal id "NA" survive the CSV round trip.
    assert list(back["query_id"]) == ["0001", "2", "NA"]
    assert back["value"].tolist() == [1.0, 0.5, 0.0]
    assert set(back["seed"]) == {None}

    summaries = store.read_summaries("evaluate")
    assert summaries.loc[0, "nDCG@10"] == 0.5 and summaries.loc[0, "n_queries"] == 3


def test_rewrite_replaces_entry_and_leaves_no_temporaries(tmp_path):
    store = ResultStore(tmp_path)
    entry = store.entry_dir("evaluate", "minilm", "scifact", "clean", 5)
    store.write_entry(entry, PARAMS, _per_query({"a": 0.1}), {"metrics": {"nDCG@10": 0.1}})
    new_params = {**PARAMS, "top_k": 10}
    store.write_entry(entry, new_params, _per_query({"b": 0.9}), {"metrics": {"nDCG@10": 0.9}})
    assert is_finished(entry, new_params) and not is_finished(entry, PARAMS)
    assert store.read_per_query("evaluate")["query_id"].tolist() == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["evaluate"]


def test_failed_write_keeps_previous_entry(tmp_path):
    store = ResultStore(tmp_path)
    entry = store.entry_dir("evaluate", "minilm", "scifact", "clean", 5)
    store.write_entry(entry, PARAMS, _per_query({"a": 0.1}), {"metrics": {"nDCG@10": 0.1}})
    with pytest.raises(ResultStoreError, match="JSON"):
        store.write_entry(entry, {"bad": object()}, _per_query({"a": 0.2}), {"metrics": {}})
    assert is_finished(entry, PARAMS)


def test_filters_and_empty_experiment(tmp_path):
    store = ResultStore(tmp_path)
    for seed, value in [(1, 0.2), (2, 0.4)]:
        entry = store.entry_dir("qv", "minilm", "scifact", "mispelling", seed)
        store.write_entry(entry, {**PARAMS, "seed": seed}, _per_query({"q": value}),
                          {"metrics": {"nDCG@10": value}})
    assert store.read_per_query("qv", seed=2)["value"].tolist() == [0.4]
    assert store.read_per_query("qv", measures=["MAP"]).empty
    assert sorted(store.read_summaries("qv")["seed"]) == [1, 2]
    assert store.read_summaries("absent").columns.tolist() == ["model", "dataset", "variant", "seed"]


def test_per_query_must_be_long_and_unique(tmp_path):
    store = ResultStore(tmp_path)
    entry = store.entry_dir("e", "m", "d", "v", 1)
    wide = pd.DataFrame({"nDCG@10": [0.5]}, index=["q1"])
    with pytest.raises(ResultStoreError, match="per_query_long"):
        store.write_entry(entry, PARAMS, wide, {"metrics": {}})
    duplicated = pd.concat([_per_query({"q1": 0.5})] * 2)
    with pytest.raises(ResultStoreError, match="duplicate"):
        store.write_entry(entry, PARAMS, duplicated, {"metrics": {}})
    with pytest.raises(ResultStoreError, match="'metrics'"):
        store.write_entry(entry, PARAMS, _per_query({"q1": 0.5}), {"n_queries": 1})
    assert not entry.exists()


def test_per_query_long_from_wide():
    wide = pd.DataFrame({"nDCG@10": [0.5, 1.0], "MAP": [0.25, 1.0]}, index=["q2", "q1"])
    long = per_query_long(wide)
    assert long.values.tolist() == [
        ["q1", "MAP", 1.0], ["q1", "nDCG@10", 1.0], ["q2", "MAP", 0.25], ["q2", "nDCG@10", 0.5]]


def test_unreadable_summary_is_unfinished_and_named_on_read(tmp_path):
    store = ResultStore(tmp_path)
    entry = store.entry_dir("e", "m", "d", "v", 1)
    entry.mkdir(parents=True)
    (entry / "summary.json").write_text("{truncated")
    assert not is_finished(entry, PARAMS)
    with pytest.raises(ResultStoreError, match="summary.json"):
        store.read_summaries("e")


def test_concurrent_writers_of_one_entry_leave_one_complete_entry(tmp_path):
    import threading

    store = ResultStore(tmp_path)
    entry = store.entry_dir("qv", "minilm", "scifact", "none", None)
    errors = []

    def write(value: float) -> None:
        try:
            for _ in range(20):
                store.write_entry(entry, {**PARAMS, "v": value}, _per_query({"q": value}),
                                  {"metrics": {"nDCG@10": value}})
        except Exception as error:  # noqa: BLE001 - a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=write, args=(v,)) for v in (0.25, 0.75)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    value = store.read_per_query("qv")["value"].tolist()
    assert value in ([0.25], [0.75])
    assert is_finished(entry, {**PARAMS, "v": value[0]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qv"]
