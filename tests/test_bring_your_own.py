"""Bring your own retriever: a local model folder, a spec file, a mapping or an object, through the
library, the command line and a grid, with its identity taken from its content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustir.cli import main
from robustir.model_sources import ModelSourceError, folder_sha256, resolve_model
from robustir.models import get_model_spec
from robustir.results import ResultStore
from toy_retrievers import letter_vectors

MINILM_FOLDER = Path(get_model_spec("minilm").weights_location())
TOKENIZER_FILES = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def tiny_sentence_transformer(folder: Path, *, seed: int = 0, pooling: str = "mean") -> Path:
    """A random 2-layer BERT saved as a sentence-transformers folder (MiniLM's tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    folder.mkdir(parents=True)
    BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_FOLDER / name, folder / name)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_lasttoken": False}))
    (folder / "2_Normalize").mkdir()
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": "passage: "}, "similarity_fn_name": "cosine"}))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_sentence_transformer(tmp_path_factory.mktemp("byo") / "model")


def test_a_sentence_transformers_folder_is_read_from_its_own_config(tiny_model):
    spec = resolve_model(tiny_model)
    assert (spec.pooling, spec.normalize, spec.score, spec.max_length) == ("mean", True, "cos", 64)
    assert spec.query_prompt("scifact") == "query: "
    assert spec.document_prompt("arguana") == "passage: "
    assert spec.key == f"model-{folder_sha256(tiny_model)[:10]}"
    assert spec.family == "user model"


def test_the_minilm_package_folder_gives_the_catalog_entry_results(scifact_mini, embedding_cache):
    from robustir.experiments.evaluation import evaluate

    folder = resolve_model(MINILM_FOLDER)
    assert (folder.pooling, folder.normalize, folder.max_length) == ("mean", True, 256)
    catalog = evaluate("minilm", scifact_mini, cache=embedding_cache, progress=False, top_k=100)
    own = evaluate(folder, scifact_mini, cache=embedding_cache, progress=False, top_k=100)
    assert own.params["model"]["key"] != "minilm"
    np.testing.assert_allclose(own.per_query["nDCG@10"], catalog.per_query["nDCG@10"], atol=1e-6)


def test_two_folders_with_the_same_name_never_share_an_identity(tmp_path):
    first = resolve_model(tiny_sentence_transformer(tmp_path / "a" / "model", seed=0))
    second = resolve_model(tiny_sentence_transformer(tmp_path / "b" / "model", seed=1))
    copy = tmp_path / "c" / "model"
    shutil.copytree(tmp_path / "a" / "model", copy)
    (copy / "README.md").write_text("a note changes nothing")
    assert first.key != second.key and first.display_name == second.display_name == "model"
    assert resolve_model(copy).key == first.key  # the same weights, wherever they are


def test_overrides_change_the_key_but_run_settings_do_not(tiny_model):
    base = resolve_model(tiny_model)
    cls = resolve_model(tiny_model, pooling="cls")
    assert cls.pooling == "cls" and cls.key.startswith(base.key + "~")
    assert resolve_model(tiny_model, max_length=32).key == base.key
    assert resolve_model("minilm", query_prompt="q: ").query_prompt("nq") == "q: "


def test_bad_sources_get_clear_errors_before_any_encoding(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="not a model folder.*config.json.*modules.json"):
        resolve_model(tmp_path / "empty")
    max_pooling = tiny_sentence_transformer(tmp_path / "max", pooling="max")
    with pytest.raises(ModelSourceError, match=r"1_Pooling/config.json.*pass --pooling"):
        resolve_model(max_pooling)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({"source": str(tiny_model), "poolin": "cls"}))
    with pytest.raises(ModelSourceError, match=r"spec.yaml: unknown setting\(s\) \['poolin'\]"):
        resolve_model(spec_file)
    spec_file.write_text(yaml.safe_dump({"source": str(tiny_model), "pooling": "max"}))
    with pytest.raises(ModelSourceError, match="pooling = 'max' is not valid"):
        resolve_model(spec_file)
    with pytest.raises(ModelSourceError, match="huggingface-cli download org/not-here"):
        resolve_model("org/not-here")


def test_a_yaml_spec_and_a_mapping_resolve_alike(tmp_path, tiny_model):
    spec_file = tmp_path / "mine.yaml"
    spec_file.write_text(yaml.safe_dump({"source": str(tiny_model), "pooling": "cls",
                                         "query_prompt": "search: "}))
    from_file = resolve_model(spec_file)
    from_mapping = resolve_model({"source": str(tiny_model), "pooling": "cls",
                                  "query_prompt": "search: "})
    assert from_file == from_mapping and from_file.query_prompt("scifact") == "search: "


def test_every_analysis_runs_on_a_folder_through_the_command_line(tiny_model, scifact_tiny,
                                                                    tmp_path, capsys):
    store = tmp_path / "results"
    cache = tmp_path / "cache"
    common = ["--model", str(tiny_model), "--dataset", str(scifact_tiny), "--output", str(store),
              "--cache-dir", str(cache)]
    assert main(["evaluate", *common, "--quiet"]) == 0
    variants = tmp_path / "ordering.jsonl"
    assert main(["vary", "--dataset", str(scifact_tiny), "--family", "ordering", "--seed", "5",
                 "--output", str(variants)]) == 0
    assert main(["evaluate", *common, "--queries", str(variants), "--quiet"]) == 0
    assert main(["poison", *common, "--n-passages", "2", "--iterations", "2", "--candidates",
                 "5", "--seed", "1999", "--quiet"]) == 0
    assert main(["geometry", *common, "--sample-size", "50", "--n-pairs", "500"]) == 0
    from robustir.data import dataset_key

    key, data = resolve_model(tiny_model).key, dataset_key(scifact_tiny)  # folders: name + hash
    entries = {p.relative_to(store).parts[:4] for p in store.glob("*/*/*/*/seed-*/summary.json")}
    assert {("evaluate", key, data, "clean"), ("evaluate", key, data, "ordering"),
            ("corpus_poisoning", key, data, "hotflip_N2"),
            ("geometry", key, data, "clean")} <= entries
    summary = ResultStore(store).read_summaries("evaluate").set_index("variant")
    assert 0.0 <= summary.loc["clean", "nDCG@10"] <= 1.0
    assert "written to" in capsys.readouterr().out


class OverlapEncoder:
    """A user model with the BEIR/MTEB encode functions: bag-of-letters vectors."""

    name = "letters"

    def encode_queries(self, queries, batch_size=32, **kwargs):
        return letter_vectors(queries)

    def encode_corpus(self, corpus, batch_size=32, **kwargs):
        return letter_vectors([d["title"] + " " + d["text"] for d in corpus])


class TitleMatcher:
    """A user retriever with a BEIR-style search: documents whose title shares a word rank first."""

    def search(self, corpus, queries, top_k, **kwargs):
        run = {}
        for qid, text in queries.items():
            words = set(text.lower().split())
            scores = {d: float(len(words & set(doc["title"].lower().split())))
                      for d, doc in corpus.items()}
            run[qid] = dict(sorted(scores.items(), key=lambda item: -item[1])[:top_k])
        return run


def test_user_objects_are_evaluated_like_catalog_models(scifact_tiny):
    from robustir.experiments.evaluation import evaluate
    from robustir.retrievers import EncodeFunctionsRetriever, SearchFunctionRetriever, make_retriever

    assert isinstance(make_retriever(OverlapEncoder()), EncodeFunctionsRetriever)
    assert isinstance(make_retriever(TitleMatcher(), name="titles"), SearchFunctionRetriever)
    letters = evaluate(OverlapEncoder(), scifact_tiny, progress=False, top_k=10)
    titles = evaluate(make_retriever(TitleMatcher(), name="titles"), scifact_tiny, progress=False,
                      top_k=10)
    assert letters.params["model"]["key"] == "letters"
    assert titles.params["model"]["key"] == "titles"
    # every query has a run of at most top_k hits, ranked best first
    assert all(len(hits) == 10 for hits in titles.run.values())
    for hits in titles.run.values():
        scores = list(hits.values())
        assert scores == sorted(scores, reverse=True)


def test_a_grid_takes_folders_and_inline_mappings(tiny_model, scifact_tiny, tmp_path):
    from robustir.runs import load_grid, run_grid

    repo = Path(__file__).resolve().parents[1]
    cls = {"source": str(tiny_model), "pooling": "cls"}
    data = {"data_root": str(scifact_tiny.parent)}
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({
        "results": str(tmp_path / "results"), "runs_dir": str(tmp_path / "runs"), "workers": 1,
        "analyses": [
            {"experiment": "evaluate", "notebook": str(repo / "notebooks/evaluate.py"),
             "models": [str(tiny_model), cls], "datasets": ["scifact"],
             "parameters": {"top_k": 100, "cache_dir": str(tmp_path / "cache"), **data}},
            {"experiment": "geometry", "notebook": str(repo / "notebooks/geometry.py"),
             "models": [str(tiny_model)], "datasets": ["scifact"], "seeds": [5],
             "parameters": {"sample_size": 50, "n_pairs": 500, "cache_dir": str(tmp_path / "cache"),
                            **data}},
        ],
    }))
    grid = load_grid(grid_file, base=repo)
    keys = {job.model for job in grid.jobs}
    assert keys == {resolve_model(tiny_model).key, resolve_model(cls).key}
    report = run_grid(grid)
    assert len(report.ran) == 3
    store = ResultStore(tmp_path / "results")
    evaluated = store.read_summaries("evaluate").set_index("model")
    assert set(evaluated.index) == keys
    # mean and CLS pooling of one random model rank differently
    assert evaluated["nDCG@10"].nunique() == 2
    assert len(store.read_summaries("geometry")) == 1
