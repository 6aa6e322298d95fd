"""Damaged results-store entries are found by every reader and by ``robustir verify``."""

from __future__ import annotations

import json
import stat

import pandas as pd
import pytest

from robustir.results import ResultStore, ResultStoreError, verify_entry


def _store(tmp_path, n_queries: int = 4) -> tuple[ResultStore, list]:
    store = ResultStore(tmp_path / "results")
    entries = []
    for model in ("bm25", "minilm"):
        per_query = pd.DataFrame({"query_id": [f"q{i}" for i in range(n_queries) for _ in "ab"],
                                  "measure": ["MAP", "nDCG@10"] * n_queries,
                                  "value": [0.5] * (2 * n_queries)})
        entry = store.entry_dir("evaluate", model, "scifact", "clean", None)
        entries.append(store.write_entry(entry, {"model": model}, per_query,
                                         {"metrics": {"MAP": 0.5, "nDCG@10": 0.5}}))
    return store, entries


def _truncate(path, keep_lines: int) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:keep_lines]))


def test_a_truncated_per_query_file_is_never_read_as_fewer_queries(tmp_path):
    # issue 15 #14: the aggregates silently got half the queries
    store, (entry, _) = _store(tmp_path)
    _truncate(entry / "per_query.csv", 5)
    with pytest.raises(ResultStoreError, match=r"per_query.csv holds 2 queries where summary.json "
                                               r"says 4 .*robustir verify --repair"):
        store.read_per_query("evaluate")
    assert verify_entry(entry) == [
        "per_query.csv holds 2 queries where summary.json says 4 (a truncated or replaced file)"]


def test_a_per_query_file_cut_mid_line_is_found(tmp_path):
    _, (entry, _) = _store(tmp_path)
    path = entry / "per_query.csv"
    path.write_bytes(path.read_bytes()[:-3])
    assert "per_query.csv ends in the middle of a line (a truncated file)" in verify_entry(entry)


def test_an_edited_parameter_file_is_found(tmp_path):
    _, (entry, _) = _store(tmp_path)
    params = json.loads((entry / "params.json").read_text())
    (entry / "params.json").write_text(json.dumps({**params, "top_k": 10}))
    assert verify_entry(entry) == ["params.json does not match the parameter hash in summary.json"]


@pytest.mark.parametrize("content", ["", "{\"metrics\": ", "[1, 2]"])
def test_a_broken_summary_is_named(content, tmp_path):
    _, (entry, _) = _store(tmp_path)
    (entry / "summary.json").write_text(content)
    (problem,) = verify_entry(entry)
    assert problem.startswith("summary.json")


def test_files_that_differ_from_their_recorded_checksums_are_named(tmp_path):
    from robustir.provenance import file_sha256

    _, (entry, _) = _store(tmp_path)
    recorded = {name: file_sha256(entry / name) for name in ("per_query.csv", "params.json")}
    table = (entry / "per_query.csv").read_text().replace("0.5", "0.9")  # same queries, other values
    (entry / "per_query.csv").write_text(table)
    assert verify_entry(entry, recorded) == ["per_query.csv does not match its recorded checksum"]
    (entry / "params.json").unlink()
    assert "params.json is missing" in verify_entry(entry, recorded)


def test_verify_names_what_is_broken_and_repair_removes_only_that(cli, tmp_path):
    store, (broken, intact) = _store(tmp_path)
    _truncate(broken / "per_query.csv", 3)
    leftover = store.root / ".tmp-0123"
    leftover.mkdir()
    (leftover / "params.json").write_text("{}")
    code, out, _ = cli("verify", store.root)
    assert code == 1
    assert f"{broken}: per_query.csv holds 1 queries where summary.json says 4" in out
    assert f"{leftover}: a temporary folder of a killed writer" in out and str(intact) not in out
    assert "2 broken item(s)" in out
    assert cli("verify", store.root, "--repair")[0] == 0
    assert not broken.exists() and not leftover.exists()
    assert verify_entry(intact) == [] and cli("verify", store.root)[0] == 0


def test_verify_of_a_missing_store_is_an_input_error(cli, tmp_path):
    code, _, err = cli("verify", tmp_path / "nowhere")
    assert code == 2 and f"no results store at {tmp_path / 'nowhere'}" in err


def test_store_entries_respect_the_umask(tmp_path, umask):
    umask(0o077)
    _, (entry, _) = _store(tmp_path)
    assert {stat.S_IMODE(p.stat().st_mode) for p in entry.iterdir()} == {0o600}
