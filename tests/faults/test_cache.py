"""Damaged embedding-cache entries are named, moved aside and recomputed, never used."""

from __future__ import annotations

import json
import logging
import stat

import numpy as np
import pytest

from robustir.cache import EmbeddingCache
from robustir.experiments.evaluation import evaluate


def _entry(cache: EmbeddingCache, *, key: str = "ab" + "0" * 62):
    cache.put(key, ["d1", "d2", "d3"], np.arange(12, dtype=np.float32).reshape(3, 4), {"x": 1})
    return key, *cache._paths(key)


def _damaged(caplog, path) -> str:
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in record.getMessage() and "damaged" in record.getMessage()
    return record.getMessage()


def _corpus_entry(cache: EmbeddingCache, n_docs: int):
    """The array and sidecar of MiniLM's cached corpus (``n_docs`` ids, mean pooling of the last
    layer; its siblings' readings are cached beside it)."""
    for meta in cache.root.glob("*/*.json"):
        record = json.loads(meta.read_text())
        if (len(record["ids"]) == n_docs and record["inputs"]["pooling"] == "mean"
                and record["inputs"]["layer"] is None):
            return meta.with_suffix(".npy"), meta
    raise AssertionError("no corpus entry")


@pytest.fixture
def clean_run(tiny, tmp_path):
    """A MiniLM evaluation of the tiny folder into a fresh cache, and that cache."""
    cache = EmbeddingCache(tmp_path / "cache")
    return evaluate("minilm", tiny, cache=cache, progress=False), cache


@pytest.mark.parametrize("damage", ["rewritten", "shuffled ids"])
def test_a_tampered_corpus_entry_is_recomputed_not_used(damage, clean_run, tiny, caplog):
    # issue 15 #1: a rewritten array or shuffled ids gave nDCG@10 0.98 -> 0.05, stored silently
    first, cache = clean_run
    array, meta = _corpus_entry(cache, 4)
    if damage == "rewritten":  # same size, other numbers
        vectors = np.load(array)
        np.save(array, np.random.default_rng(0).standard_normal(vectors.shape).astype(np.float32))
    else:
        record = json.loads(meta.read_text())
        record["ids"] = record["ids"][::-1]
        meta.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="robustir.cache"):
        again = evaluate("minilm", tiny, cache=cache, progress=False)
    message = _damaged(caplog, array)
    assert ("array does not match its checksum" if damage == "rewritten"
            else "ids do not match their checksum") in message
    assert again.summary["metrics"] == first.summary["metrics"]  # recomputed, not read
    assert again.summary["cache"]["misses"] == 1
    assert {p.name for p in array.parent.glob("*.corrupt-1")} == {
        f"{array.name}.corrupt-1", f"{meta.name}.corrupt-1"}
    assert cache.verify() != []  # the damaged copies stay for inspection until --repair


def test_an_entry_holding_other_ids_than_asked_is_not_used(tmp_path, caplog):
    # a consistent sidecar (checksums recomputed) for other ids still does not serve a request
    cache = EmbeddingCache(tmp_path)
    key, array, meta = _entry(cache)
    with caplog.at_level(logging.WARNING, logger="robustir.cache"):
        assert cache.get(key, ["d3", "d2", "d1"]) is None
    assert "holds other ids than the 3 asked for" in _damaged(caplog, array)
    assert not array.exists() and not meta.exists()


@pytest.mark.parametrize("damage", ["truncated array", "empty array", "empty sidecar",
                                    "sidecar not JSON", "sidecar without ids"])
def test_a_broken_entry_is_named_moved_aside_and_missed(damage, tmp_path, caplog):
    # issue 15 #2: a truncated or empty file gave a numpy/JSON/EOFError traceback naming no file
    cache = EmbeddingCache(tmp_path)
    key, array, meta = _entry(cache)
    if damage == "truncated array":
        array.write_bytes(array.read_bytes()[:90])
    elif damage == "empty array":
        array.write_bytes(b"")
    elif damage == "empty sidecar":
        meta.write_text("")
    elif damage == "sidecar not JSON":
        meta.write_text('{"ids": ["d1", "d2"')
    else:
        meta.write_text(json.dumps({"shape": [3, 4]}))
    with caplog.at_level(logging.WARNING, logger="robustir.cache"):
        assert cache.get(key, ["d1", "d2", "d3"]) is None
    message = _damaged(caplog, array)
    assert ("checksum" in message) if "array" in damage else (meta.name in message)
    assert {p.name for p in array.parent.iterdir()} == {f"{array.name}.corrupt-1",
                                                        f"{meta.name}.corrupt-1"}
    cache.put(key, ["d1", "d2", "d3"], np.ones((3, 4), np.float32), {})  # the recomputation
    assert cache.get(key, ["d1", "d2", "d3"])[1].sum() == 12


def test_half_an_entry_from_a_killed_write_is_a_plain_miss(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    key, array, meta = _entry(cache)
    meta.unlink()  # killed between the two renames
    with caplog.at_level(logging.WARNING):
        assert cache.get(key, ["d1", "d2", "d3"]) is None
    assert caplog.records == [] and list(array.parent.glob("*.corrupt-*")) == []


def test_an_entry_without_checksums_is_recomputed_and_replaced(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key, array, meta = _entry(cache)
    meta.write_text(json.dumps({"ids": ["d1", "d2", "d3"], "shape": [3, 4], "inputs": {}}))
    assert cache.get(key, ["d1", "d2", "d3"]) is None
    assert list(array.parent.glob("*.corrupt-*")) == []


@pytest.mark.parametrize("vectors", [np.empty((0, 0), np.float32), np.ones((2, 4), np.float32),
                                     np.ones(3, np.float32)])
def test_embeddings_that_do_not_fit_the_ids_are_never_cached(vectors, tmp_path):
    # issue 15 #12: --batch-size -4 wrote empty cache entries
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(ValueError, match="cannot cache embeddings of shape .* for 3 ids"):
        cache.put("cd" + "0" * 62, ["d1", "d2", "d3"], vectors, {})
    assert list(tmp_path.rglob("*")) == []


def test_a_negative_batch_size_is_refused_before_encoding(tiny, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1, got -4"):
        evaluate("minilm", tiny, batch_size=-4, cache=EmbeddingCache(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_verify_reports_and_repairs_a_cache(tmp_path, cli):
    cache = EmbeddingCache(tmp_path / "cache")
    key, array, meta = _entry(cache)
    good_key, good_array, _ = _entry(cache, key="ef" + "1" * 62)
    array.write_bytes(array.read_bytes()[:-8])
    (tmp_path / "results").mkdir()
    code, out, _ = cli("verify", tmp_path / "results", "--cache", cache.root)
    assert code == 1
    assert f"{array}: the array does not match its checksum" in out and str(good_array) not in out
    code, out, _ = cli("verify", tmp_path / "results", "--cache", cache.root, "--repair")
    assert code == 0 and "1 broken item(s) deleted" in out
    assert not array.exists() and not meta.exists() and good_array.exists()
    assert cli("verify", tmp_path / "results", "--cache", cache.root)[0] == 0


@pytest.mark.parametrize("mask,mode", [(0o077, 0o600), (0o022, 0o644)])
def test_cache_files_respect_the_umask(mask, mode, tmp_path, umask):
    # issue 15 #18: cache files were forced to 0644 whatever the umask
    umask(mask)
    _, array, meta = _entry(EmbeddingCache(tmp_path))
    assert {stat.S_IMODE(array.stat().st_mode), stat.S_IMODE(meta.stat().st_mode)} == {mode}
