"""Every ``robustir`` command through :func:`robustir.cli.main`, and every option that changes a
result, each checked for the change it should make (not only that the command exits 0)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustir.cli import main
from robustir.data import DATASETS, load_dataset
from robustir.metrics import per_query_metrics
from robustir.models import MODELS
from robustir.perturb import query_words
from robustir.results import ResultStore
from test_bring_your_own import tiny_model  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY_NOTEBOOK = ROOT / "tests" / "fixtures" / "notebooks" / "tiny_entry.py"
NOISE = "The quick brown fox jumps over the lazy dog, and the dog sleeps in the sun. " * 3


@pytest.fixture(scope="module")
def small(scifact_mini, tmp_path_factory) -> Path:
    """10 SciFact test queries, their relevant documents and 40 others, named scifact."""
    full = load_dataset(scifact_mini)
    qids = list(full.qrels)[:10]
    gold = sorted({d for q in qids for d in full.qrels[q]})
    docs = gold + [d for d in full.corpus if d not in gold][:40]
    folder = tmp_path_factory.mktemp("small") / "scifact"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, **full.corpus[d]}) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": full.queries[q]}) + "\n" for q in qids))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q in qids for d, g in full.qrels[q].items()))
    return folder


def _summary(store: Path, experiment: str, model: str, variant: str = "clean", seed: str = "none") -> dict:
    # a dataset given as a folder is keyed by its name and a hash of its files
    (entry,) = (store / experiment / model).glob(f"scifact*/{variant}/seed-{seed}")
    return {"summary": json.loads((entry / "summary.json").read_text()),
            "params": json.loads((entry / "params.json").read_text())}


# -- models, datasets ---------------------------------------------------------------------------


def test_models_lists_every_catalog_entry(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["key", "name", "family"]
    keys = [line.split()[0] for line in lines[1:]]
    assert keys == list(MODELS)
    minilm = next(line.split() for line in lines if line.startswith("minilm "))
    assert "sentence-transformers/all-MiniLM-L6-v2" in minilm and "mean" in minilm and "True" in minilm


def test_datasets_lists_the_registry_with_published_sizes_and_what_is_local(tmp_path, small, capsys):
    shutil.copytree(small, tmp_path / "scifact")
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data root: {tmp_path}"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == list(DATASETS)
    # BEIR's SciFact: 300 test queries over 5,183 documents (Thakur et al. 2021, table 1)
    assert rows["scifact"][-1] == "yes" and "300" in rows["scifact"] and "5183" in rows["scifact"]
    assert all(row[-1] == "no" for key, row in rows.items() if key != "scifact")


# -- evaluate, evaluate-run -------------------------------------------------------------------------


def _evaluate(small, store, *options):
    return main(["evaluate", "--dataset", str(small), "--output", str(store), "--quiet",
                 "--cache-dir", str(store.parent / "cache"), *options])


@pytest.fixture(scope="module")
def default_minilm(small, tmp_path_factory):
    store = tmp_path_factory.mktemp("default") / "results"
    assert _evaluate(small, store, "--model", "minilm") == 0
    return _summary(store, "evaluate", "minilm")


@pytest.mark.parametrize("options, record, differs", [
    (["--max-length", "8"], ("encoding", "max_length", 8), True),
    (["--pooling", "cls"], ("model", "pooling", "cls"), True),
    # prompts long enough to dominate a mean: the rankings must change
    (["--query-prompt", NOISE], ("encoding", "query_prompt", NOISE), True),
    (["--document-prompt", NOISE], ("encoding", "document_prompt", NOISE), True),
    (["--no-normalize", "--score", "dot"], ("model", "score", "dot"), True),
    (["--dtype", "bfloat16"], ("encoding", "dtype", "bfloat16"), None),
    (["--batch-size", "1"], ("encoding", "batch_size", 1), False),
])
def test_evaluate_model_options_change_the_result_as_the_library_does(
        small, tmp_path, default_minilm, options, record, differs):
    from robustir.experiments.evaluation import evaluate
    from robustir.model_sources import resolve_model

    store = tmp_path / "results"
    assert _evaluate(small, store, "--model", "minilm", *options) == 0
    stored = _summary(store, "evaluate", resolve_model("minilm", **_overrides(options)).key)
    section, field, value = record
    assert stored["params"][section][field] == value
    library = evaluate(resolve_model("minilm", **_overrides(options)), small, progress=False,
                       max_length=_option(options, "--max-length", int),
                       dtype=_option(options, "--dtype", str),
                       batch_size=_option(options, "--batch-size", int) or 32)
    assert stored["summary"]["metrics"] == pytest.approx(library.summary["metrics"], abs=1e-9)
    if differs is not None:
        changed = stored["summary"]["metrics"] != pytest.approx(default_minilm["summary"]["metrics"], abs=1e-6)
        assert changed is differs, (options, stored["summary"]["metrics"])


def _option(options, name, kind):
    return kind(options[options.index(name) + 1]) if name in options else None


def _overrides(options) -> dict:
    """The model overrides of ``options`` as resolve_model takes them."""
    names = {"--pooling": "pooling", "--query-prompt": "query_prompt",
             "--document-prompt": "document_prompt", "--score": "score"}
    overrides = {names[o]: options[i + 1] for i, o in enumerate(options) if o in names}
    if "--no-normalize" in options:
        overrides["normalize"] = False
    return overrides


def test_pooling_override_equals_the_catalog_sibling(small, tmp_path):
    store = tmp_path / "results"
    assert _evaluate(small, store, "--model", "minilm", "--pooling", "cls") == 0
    assert _evaluate(small, store, "--model", "minilm_cls") == 0
    summaries = ResultStore(store).read_summaries("evaluate").set_index("model")
    overridden = [key for key in summaries.index if key != "minilm_cls"]
    assert len(overridden) == 1
    np.testing.assert_allclose(summaries.loc[overridden[0], "nDCG@10"], summaries.loc["minilm_cls", "nDCG@10"])


def test_top_k_truncates_the_run(small, tmp_path):
    """With 5 hits per query, Recall@100 is the full run's Recall@5 and MAP its MAP@5 sum
    over all relevant documents (trec_eval: the run is all there is)."""
    from robustir.experiments.evaluation import evaluate

    store = tmp_path / "results"
    assert _evaluate(small, store, "--model", "bm25", "--top-k", "5") == 0
    stored = _summary(store, "evaluate", "bm25")
    assert stored["params"]["top_k"] == 5
    full = evaluate("bm25", small, progress=False)
    data = load_dataset(small)
    cut = {q: dict(list(hits.items())[:5]) for q, hits in full.run.items()}
    expected = per_query_metrics(data.qrels, cut, ["Recall@5", "MAP@5", "nDCG@10"]).mean()
    metrics = stored["summary"]["metrics"]
    assert metrics["Recall@100"] == pytest.approx(expected["Recall@5"])
    assert metrics["MAP"] == pytest.approx(expected["MAP@5"])
    assert metrics["Recall@100"] < full.summary["metrics"]["Recall@100"]


def test_evaluate_variant_queries_under_their_name(small, tmp_path):
    variants = tmp_path / "reordered.jsonl"
    assert main(["vary", "--dataset", str(small), "--family", "ordering", "--seed", "5",
                 "--output", str(variants)]) == 0
    store = tmp_path / "results"
    assert _evaluate(small, store, "--model", "bm25", "--queries", str(variants)) == 0
    assert _evaluate(small, store, "--model", "bm25", "--queries", str(variants), "--variant", "mine") == 0
    from robustir.experiments.evaluation import evaluate

    library = evaluate("bm25", small, queries=variants, progress=False)
    for variant in ("reordered", "mine"):
        stored = _summary(store, "evaluate", "bm25", variant)
        assert stored["params"]["queries"]["source"] == str(variants)
        assert stored["summary"]["metrics"] == pytest.approx(library.summary["metrics"])


def test_evaluate_split_reads_that_splits_judgements(scifact_tiny, tmp_path):  # noqa: F811
    store = tmp_path / "results"
    assert main(["evaluate", "--model", "bm25", "--dataset", str(scifact_tiny), "--split", "train",
                 "--output", str(store), "--quiet"]) == 0
    stored = _summary(store, "evaluate", "bm25")
    assert stored["params"]["split"] == "train" and stored["summary"]["n_queries"] == 30


def test_evaluate_run_measures_and_table(tmp_path, capsys):
    (tmp_path / "qrels.txt").write_text("1 0 a 1\n1 0 b 0\n2 0 c 2\n")
    (tmp_path / "run.txt").write_text("1 Q0 b 1 0.9 t\n1 Q0 a 2 0.5 t\n2 Q0 d 1 0.8 t\n2 Q0 c 2 0.7 t\n")
    assert main(["evaluate-run", "--qrels", str(tmp_path / "qrels.txt"), "--run",
                 str(tmp_path / "run.txt"), "--measures", "P@1", "MRR"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    # by hand: query 1 ranks b (not relevant) then a; query 2 ranks d then c
    assert lines == [["P@1", "1", "0.0000"], ["MRR", "1", "0.5000"], ["P@1", "2", "0.0000"],
                     ["MRR", "2", "0.5000"], ["P@1", "all", "0.0000"], ["MRR", "all", "0.5000"]]


# -- vary -------------------------------------------------------------------------------------------


def _variants(path: Path) -> dict[str, str]:
    return {r["_id"]: r["text"] for r in map(json.loads, path.read_text().splitlines())}


def test_vary_seed_family_and_rng_scope(small, tmp_path):
    fewer = tmp_path / "fewer" / "scifact"
    shutil.copytree(small, fewer)
    lines = (small / "queries.jsonl").read_text().splitlines()
    (fewer / "queries.jsonl").write_text("\n".join(lines[1:]) + "\n")
    dropped = json.loads(lines[0])["_id"]
    qrels = (small / "qrels" / "test.tsv").read_text().splitlines()
    (fewer / "qrels" / "test.tsv").write_text(
        "\n".join(line for line in qrels if not line.startswith(f"{dropped}\t")) + "\n")

    def vary(folder, name, *options):
        out = tmp_path / f"{name}.jsonl"
        assert main(["vary", "--dataset", str(folder), "--output", str(out), *options]) == 0
        return _variants(out)

    stream = vary(small, "stream", "--family", "mispelling", "--seed", "27")
    assert vary(small, "again", "--family", "mispelling", "--seed", "27") == stream
    assert vary(small, "seed5", "--family", "mispelling", "--seed", "5") != stream
    ordered = vary(small, "ordering", "--family", "ordering", "--seed", "27")
    originals = {r["_id"]: r["text"] for r in map(json.loads, lines)}
    # reordering keeps each query's words (TextAttack's word split), only their order changes
    assert all(Counter(w.text for w in query_words(ordered[q])) == Counter(w.text for w in query_words(text))
               for q, text in originals.items())
    # per-query generators: a query's variant does not depend on the others in the split
    per_query = vary(small, "query", "--family", "mispelling", "--seed", "27", "--rng-scope", "query")
    fewer_per_query = vary(fewer, "fewer_query", "--family", "mispelling", "--seed", "27", "--rng-scope", "query")
    assert all(fewer_per_query[q] == per_query[q] for q in fewer_per_query)
    fewer_stream = vary(fewer, "fewer_stream", "--family", "mispelling", "--seed", "27")
    assert dropped not in fewer_stream and any(fewer_stream[q] != stream[q] for q in fewer_stream)
    provenance = json.loads((tmp_path / "query.provenance.json").read_text())
    assert provenance["rng_scope"] == "query"


# -- poison, geometry ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poisoned(tiny_model, scifact_tiny, tmp_path_factory):  # noqa: F811
    """One tiny-model attack per option set, all into one store."""
    store = tmp_path_factory.mktemp("poison") / "results"
    base = ["poison", "--model", str(tiny_model), "--dataset", "scifact", "--data-root",
            str(scifact_tiny.parent), "--output", str(store), "--cache-dir", str(store.parent / "cache"),
            "--iterations", "2", "--candidates", "4", "--passage-length", "8", "--batch-size", "4",
            "--quiet"]
    assert main([*base, "--n-passages", "1", "--seed", "5"]) == 0
    assert main([*base, "--n-passages", "2", "--seed", "27", "--no-baselines", "--top-k", "3",
                 "--tie-rule", "trec_eval"]) == 0
    # a bfloat16 attack evaluated in bfloat16 too (the default grid's decoder retriever)
    assert main([*base, "--n-passages", "1", "--seed", "1999", "--no-baselines", "--bf16",
                 "--dtype", "bfloat16"]) == 0
    return store


def test_poison_options_change_the_entries(poisoned, tiny_model):  # noqa: F811
    from robustir.model_sources import resolve_model

    key = resolve_model(tiny_model).key
    table = ResultStore(poisoned).read_summaries("corpus_poisoning")
    assert sorted(zip(table["variant"], table["seed"])) == [
        ("gold_N1", 5), ("hotflip_N1", 5), ("hotflip_N1_bfloat16", 1999), ("hotflip_N2", 27),
        ("query_text_N1", 5)]
    one = _summary(poisoned, "corpus_poisoning", key, "hotflip_N1", "5")
    two = _summary(poisoned, "corpus_poisoning", key, "hotflip_N2", "27")
    assert (one["params"]["tie_rule"], two["params"]["tie_rule"]) == ("adversarial_loses", "trec_eval")
    for run in (one, two):
        rule = run["params"]["tie_rule"]
        assert run["summary"]["metrics"] | run["summary"]["asr_by_tie_rule"][rule] == run["summary"]["metrics"]
    # --top-k 3: three hits per query, so the passage is in the top 5, 10, 20 and 50 alike
    asr = two["summary"]["metrics"]
    assert asr["ASR@5"] == asr["ASR@10"] == asr["ASR@20"] == asr["ASR@50"]
    assert two["params"]["top_k"] == 3 and len(two["summary"]["validation_similarity"]) == 2
    # --passage-length, --iterations and --candidates name the passages file and shape the ids
    files = {f.name.split("_supervised_")[1]: f
             for f in (poisoned / "corpus_poisoning_passages" / key / "scifact").glob("*.json")}
    assert sorted(files) == ["hotflip_N1_Len8_Iter2_Pool4_InitTrue.json",
                             "hotflip_N1_Len8_Iter2_Pool4_InitTrue_bfloat16.json",
                             "hotflip_N2_Len8_Iter2_Pool4_InitTrue.json"]
    passages = json.loads(files["hotflip_N2_Len8_Iter2_Pool4_InitTrue.json"].read_text())["passages"]
    assert [len(p["best_adv_passage_ids"]) for p in passages.values()] == [8, 8]


def test_geometry_sample_and_seed(tiny_model, scifact_tiny, tmp_path):  # noqa: F811
    from robustir.model_sources import resolve_model

    store = tmp_path / "results"
    common = ["geometry", "--model", str(tiny_model), "--dataset", str(scifact_tiny), "--output",
              str(store), "--cache-dir", str(tmp_path / "cache"), "--sample-size", "40", "--n-pairs", "300"]
    assert main([*common, "--seed", "1"]) == 0
    assert main([*common, "--seed", "2"]) == 0
    key = resolve_model(tiny_model).key
    first, second = (_summary(store, "geometry", key, "clean", s)["summary"] for s in ("1", "2"))
    assert first["n_sampled_documents"] == second["n_sampled_documents"] == 40
    assert first["metrics"]["average_cosine"] != second["metrics"]["average_cosine"]
    # the alignment pairs are the split's judged pairs, whatever the sample
    assert first["metrics"]["alignment"] == pytest.approx(second["metrics"]["alignment"])


# -- run, book, data fetch ----------------------------------------------------------------------


def _tiny_grid(folder: Path, **analysis) -> Path:
    grid = {"results": "results", "runs_dir": "runs", "workers": 1, "timeout_s": 300,
            "analyses": [{"experiment": "tiny", "notebook": str(TINY_NOTEBOOK), "models": ["bm25"],
                          "datasets": ["data-x"], "variants": {"clean": {"family": "clean"}},
                          "seeds": [1], **analysis}]}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_run_force_reruns_and_dask_gives_the_same_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = _tiny_grid(tmp_path)
    summary = tmp_path / "results/tiny/bm25/data-x/clean/seed-1/summary.json"
    assert main(["run", str(grid)]) == 0
    assert "1 job(s) ran, 0 already finished" in capsys.readouterr().out
    first = summary.read_text()
    stamp = summary.stat().st_mtime_ns
    assert main(["run", str(grid)]) == 0
    assert "0 job(s) ran, 1 already finished" in capsys.readouterr().out and summary.stat().st_mtime_ns == stamp
    assert main(["run", str(grid), "--force"]) == 0
    assert "1 job(s) ran, 0 already finished" in capsys.readouterr().out
    assert summary.stat().st_mtime_ns != stamp and json.loads(summary.read_text())["metrics"] == json.loads(first)["metrics"]
    shutil.rmtree(tmp_path / "results")
    assert main(["run", str(grid), "--executor", "dask", "--workers", "1"]) == 0
    assert "1 job(s) ran" in capsys.readouterr().out
    assert json.loads(summary.read_text())["metrics"] == json.loads(first)["metrics"]


@pytest.mark.slow
def test_book_builds_a_tiny_book(tmp_path, capsys, monkeypatch):
    """``robustir book`` on a copy of the book with one grid job and the generalizability
    aggregate (the study's published table): the HTML index and the chapter exist."""
    reference = ROOT.parent / "shared" / "reference"
    if not (ROOT / "_vendor" / "mathjax").is_dir() or not reference.is_dir():
        pytest.skip("needs the vendored MathJax (make setup) and ../shared/reference")
    for name in ("_config.yml", "_toc.yml", "jupytext.toml", "book", "notebooks"):
        source = ROOT / name
        (shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("runs"))
         if source.is_dir() else shutil.copy(source, tmp_path / name))
    (tmp_path / "_vendor").symlink_to(ROOT / "_vendor")
    grid = yaml.safe_load(_tiny_grid(tmp_path).read_text())
    grid["runs_dir"] = "book/runs"
    grid["aggregates"] = [{"notebook": "notebooks/generalizability.py", "parameters": {
        "classify_query_types": False, "reference_dir": str(reference)}}]  # no findings page
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main(["book", "--config", "grid.yaml"]) == 0
    assert f"book built: {tmp_path / '_build' / 'html' / 'index.html'}" in capsys.readouterr().out
    assert (tmp_path / "_build/html/book/runs/aggregates/generalizability.html").is_file()
    assert (tmp_path / "results/tiny/bm25/data-x/clean/seed-1/summary.json").is_file()
    # the home page's link to the findings page, which this grid does not make, stays text
    assert not (tmp_path / "_build/html/book/runs/aggregates/findings.html").exists()
    home = re.sub(r"<[^>]+>", "", (tmp_path / "_build/html/book/index.html").read_text())
    assert "summary is the findings page (not part of this build), and" in home


def test_data_fetch_leaves_a_complete_dataset_alone_and_names_what_is_missing(tmp_path, shared_data, capsys):
    root = tmp_path / "data"
    shutil.copytree(shared_data / "scifact", root / "scifact")
    before = {p: p.stat().st_mtime_ns for p in (root / "scifact").rglob("*") if p.is_file()}
    assert main(["data", "fetch", "scifact", "--data-root", str(root), "--quiet"]) == 0
    assert "1 dataset(s) complete, 0 fetched" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (root / "scifact").rglob("*") if p.is_file()} == before
    assert main(["data", "fetch", "--data-root", str(root)]) == 2
    assert "name the datasets to fetch" in capsys.readouterr().err
    assert main(["data", "fetch", "nosuchset", "--data-root", str(root)]) == 2
    assert "nosuchset" in capsys.readouterr().err
