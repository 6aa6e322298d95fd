"""Supervised HotFlip corpus poisoning (protocol §5) on SciFact with MiniLM and SmolLM2.

The attack tests use tiny settings (one cluster, a subset of the training queries, short
passages, few candidates, a few dozen iterations) and evaluate on a subset of the test corpus,
so they show the direction of the effect in seconds, not the study's numbers.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from robustir.attack import (
    HotFlipConfig,
    attacker_pairs,
    cluster_targets,
    embed_passages,
    fill_token_id,
    gold_passage_ids,
    hotflip_attack,
    query_text_passages,
    save_passages,
)
from robustir.experiments.corpus_poisoning import evaluate_poisoning, final_tokens, poisoning_table
from robustir.data import load_dataset
from robustir.encode import Encoder
from robustir.models import get_model_spec
from independent import asr_by_hand


def _subset(dataset, n_queries, extra_docs=0):
    """The first ``n_queries`` judged queries; the corpus cut to their golds + ``extra_docs``."""
    qids = list(dataset.qrels)[:n_queries]
    qrels = {q: dataset.qrels[q] for q in qids}
    corpus = dataset.corpus
    if extra_docs:
        keep = {d for docs in qrels.values() for d in docs if d in corpus}
        keep.update(list(corpus)[:extra_docs])
        corpus = {d: corpus[d] for d in corpus if d in keep}
    return dataclasses.replace(
        dataset, qrels=qrels, queries={q: dataset.queries[q] for q in qids}, corpus=corpus
    )


@pytest.fixture(scope="module")
def scifact(shared_data):
    path = shared_data / "scifact"
    return load_dataset(path, "train"), load_dataset(path, "test")


@pytest.fixture(scope="module")
def cache(embedding_cache):
    return embedding_cache


def _encoder(key, cache, max_length):
    return Encoder(get_model_spec(key), device="cpu", max_length=max_length, cache=cache,
                   progress=False)


# --- pieces ---------------------------------------------------------------------------------
def test_attacker_pairs_shuffle_queries_and_keep_every_gold(scifact):
    train, _ = scifact
    rows = attacker_pairs(train, np.random.default_rng(1999))
    judged = sum(1 for docs in train.qrels.values() for d in docs if d in train.corpus)
    assert len(rows) == judged == 919
    order = list(dict.fromkeys(q for q, _ in rows))
    assert sorted(order) == sorted(train.qrels) and order != list(train.qrels)
    # a query's golds are consecutive rows
    assert len(order) == sum(1 for i, (q, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != q)
    assert rows == attacker_pairs(train, np.random.default_rng(1999))


def test_cluster_targets_hold_out_validation_and_average_batches():
    vectors = np.arange(10, dtype=np.float32).reshape(10, 1)
    targets = cluster_targets(vectors, np.random.default_rng(0), batch_size=3)
    shuffled = vectors[np.random.default_rng(0).permutation(10)][:, 0]
    assert (targets.n_train, targets.n_validation) == (7, 3)
    expected = [shuffled[0:3].mean(), shuffled[3:6].mean(), shuffled[6:7].mean()]
    np.testing.assert_allclose(targets.train_centroids[:, 0], expected)
    np.testing.assert_allclose(targets.validation_centroids[:, 0], [shuffled[7:].mean()])
    capped = cluster_targets(vectors, np.random.default_rng(0), batch_size=3, max_validation=2)
    assert capped.n_validation == 2
    with pytest.raises(ValueError, match="1 validation rows|0 validation rows"):
        cluster_targets(vectors[:3], np.random.default_rng(0))


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="candidates must be a positive integer"):
        HotFlipConfig(candidates=0)
    with pytest.raises(ValueError, match="current_score_on"):
        HotFlipConfig(current_score_on="third")
    with pytest.raises(ValueError, match="validation_fraction"):
        HotFlipConfig(validation_fraction=1.5)


def test_gold_passages_keep_special_tokens_and_pad_with_the_mask_token(cache):
    minilm = _encoder("minilm", cache, 64)
    tokenizer = minilm.tokenizer
    assert fill_token_id(tokenizer) == tokenizer.mask_token_id == 103
    # [CLS] hello world [SEP] then [MASK] padding; a long text is cut, its [SEP] dropped
    assert gold_passage_ids(tokenizer, "hello world", 6) == [101, 7592, 2088, 102, 103, 103]
    long = gold_passage_ids(tokenizer, "hello world " * 20, 5)
    assert long == [101, 7592, 2088, 7592, 2088]
    # SmolLM2 has no mask token: the unk token pads
    smol = _encoder("smollm2", cache, 64).tokenizer
    assert fill_token_id(smol) == smol.unk_token_id


def test_passages_embedded_from_ids_match_the_document_path(cache):
    """Ids that are exactly a tokenised text give that text's document embedding."""
    minilm = _encoder("minilm", cache, 64)
    text = "Vitamin D deficiency is associated with tuberculosis."
    ids = minilm.tokenizer(text)["input_ids"]
    (from_ids,) = embed_passages(minilm, [ids], "scifact")
    np.testing.assert_allclose(from_ids, minilm.encode_texts([text])[0], atol=1e-5)
    # without the [SEP] the same words embed differently: ids, not text, define the passage
    (cut,) = embed_passages(minilm, [ids[:-1]], "scifact")
    assert not np.allclose(cut, from_ids, atol=1e-3)
    with pytest.raises(ValueError, match="same number of token ids"):
        embed_passages(minilm, [ids, ids[:5]], "scifact")


# --- the attack -----------------------------------------------------------------------------
def _attack_and_evaluate(key, scifact, cache, config, n_train, n_test, extra_docs, max_length):
    train, test = scifact
    encoder = _encoder(key, cache, max_length)
    train = _subset(train, n_train)
    result = hotflip_attack(encoder, train, config)
    (passage,) = result.passages
    test = _subset(test, n_test, extra_docs)
    corpus = encoder.encode_corpus(test.corpus, test.name)
    optimised = evaluate_poisoning(encoder, test, [passage.token_ids], clean_corpus=corpus)
    initial = evaluate_poisoning(encoder, test, [passage.initial_ids], clean_corpus=corpus)
    return encoder, passage, optimised, initial


def _check_best_so_far(encoder, passage, train_dataset, config):
    history = np.array(passage.history)
    assert passage.accepted == len(history) > 0
    best = history[:, 3]
    assert np.all(np.diff(best) >= 0), "the best-so-far similarity decreased"
    assert best[0] >= passage.initial_similarity
    np.testing.assert_allclose(best, np.maximum.accumulate(
        np.maximum(history[:, 2], passage.initial_similarity)))
    assert passage.best_similarity == best[-1] > passage.initial_similarity


@pytest.mark.slow
def test_minilm_hotflip_raises_similarity_and_asr_over_the_gold_initialisation(scifact, cache):
    config = HotFlipConfig(n_passages=1, iterations=20, candidates=16, passage_length=24,
                           batch_size=16, seed=1999, target_query_max_length=None)
    encoder, passage, optimised, initial = _attack_and_evaluate(
        "minilm", scifact, cache, config, n_train=160, n_test=60, extra_docs=150, max_length=64)
    _check_best_so_far(encoder, passage, scifact[0], config)
    assert len(passage.token_ids) == 24 and passage.token_ids != passage.initial_ids
    asr, asr0 = optimised.summary["metrics"]["ASR@20"], initial.summary["metrics"]["ASR@20"]
    assert asr > asr0, (asr, asr0)
    # nDCG@10 can only fall when a passage with no relevance enters the corpus
    assert (optimised.per_query["nDCG@10 change"] <= 1e-12).all()
    assert set(optimised.summary["asr_by_tie_rule"]) == {
        "adversarial_loses", "adversarial_wins", "trec_eval", "run_order"}


@pytest.mark.slow
def test_smollm2_hotflip_raises_similarity_and_asr_over_the_gold_initialisation(scifact, cache):
    config = HotFlipConfig(n_passages=1, iterations=12, candidates=8, passage_length=12,
                           batch_size=8, seed=5, target_query_max_length=None)
    encoder, passage, optimised, initial = _attack_and_evaluate(
        "smollm2", scifact, cache, config, n_train=48, n_test=30, extra_docs=150, max_length=32)
    _check_best_so_far(encoder, passage, scifact[0], config)
    asr, asr0 = optimised.summary["metrics"]["ASR@20"], initial.summary["metrics"]["ASR@20"]
    assert asr > asr0, (asr, asr0)


@pytest.mark.slow
def test_a_killed_attack_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_run(
    scifact, cache, tmp_path
):
    train = _subset(scifact[0], 120)
    encoder = _encoder("minilm", cache, 64)
    config = HotFlipConfig(n_passages=2, iterations=6, candidates=6, passage_length=8,
                           batch_size=8, seed=27, checkpoint_every=2,
                           target_query_max_length=None)
    reference = hotflip_attack(encoder, train, config)

    class Killed(Exception):
        pass

    def kill(cluster, iteration, accepted):
        if (cluster, iteration) == (1, 5):
            raise Killed

    with pytest.raises(Killed):
        hotflip_attack(encoder, train, config, checkpoint_dir=tmp_path, callback=kill)
    (state_file,) = tmp_path.glob("hotflip-minilm-scifact-*.json")
    state = json.loads(state_file.read_text())
    assert [c["iteration"] for c in state["clusters"]] == [6, 4]

    ran = []
    resumed = hotflip_attack(encoder, train, config, checkpoint_dir=tmp_path,
                             callback=lambda c, i, a: ran.append((c, i)))
    assert ran == [(1, 5), (1, 6)]  # only the iterations after the last saved state
    for got, want in zip(resumed.passages, reference.passages):
        assert got.token_ids == want.token_ids
        assert got.best_similarity == pytest.approx(want.best_similarity, abs=1e-6)
        assert got.accepted == want.accepted

    # another setting does not pick up this state
    other = dataclasses.replace(config, iterations=2)
    ran.clear()
    hotflip_attack(encoder, train, other, checkpoint_dir=tmp_path,
                   callback=lambda c, i, a: ran.append((c, i)))
    assert len(ran) == 4

    path = save_passages(tmp_path / "passages.json", resumed, encoder.tokenizer)
    saved = json.loads(path.read_text())
    assert saved["passages"]["1"]["best_adv_passage_ids"] == resumed.passages[1].token_ids
    assert saved["provenance"]["cluster_sizes"] == resumed.record["cluster_sizes"]
    assert sum(saved["provenance"]["cluster_sizes"]) == saved["provenance"]["attacker_rows"]

    baseline = query_text_passages(encoder, train, config)
    assert len(baseline) == 2 and all(len(p) == 8 for p in baseline)
    assert all(p[0] == encoder.tokenizer.cls_token_id for p in baseline)


def test_final_tokens_of_the_gold_passages_and_the_queries_that_end_alike(tmp_path):
    tokenizer = Encoder(get_model_spec("minilm"), progress=False).tokenizer

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    passages = {"0": {"initial_ids": ids("aspirin lowers the risk.")}, "1": {"initial_ids": ids("heart disease")}}
    path = tmp_path / "passages.json"
    path.write_text(json.dumps({"passages": passages}))
    queries = {"a": "aspirin helps.", "b": "blood pressure", "c": "cancer and the heart disease"}
    found = final_tokens(path, queries, tokenizer)
    assert found["final_tokens"] == [".", "disease"]
    assert found["queries_ending_alike"] == pytest.approx(2 / 3)


def test_poisoning_table_reports_mean_and_population_std_over_seeds():
    summaries = pd.DataFrame({
        "model": ["m"] * 4, "dataset": ["d"] * 4, "seed": [1, 2, 1, 1],
        "variant": ["hotflip_N10", "hotflip_N10", "gold_N10", "hotflip_N10_bfloat16"],
        "ASR@20": [0.10, 0.30, 0.05, 0.2],
    })
    table = poisoning_table(summaries)
    assert table.loc[("hotflip", "float32", "m"), ("d", 10)] == "20.0 ± 10.0 (2)"
    assert table.loc[("gold", "no attack", "m"), ("d", 10)] == "5.0 ± 0.0 (1)"
    assert table.loc[("hotflip", "bfloat16", "m"), ("d", 10)] == "20.0 ± 0.0 (1)"
    with pytest.raises(ValueError, match="not <passages>_N<n>"):
        poisoning_table(summaries.assign(variant="clean"))
    with pytest.raises(ValueError, match="no column 'ASR@7'"):
        poisoning_table(summaries, "ASR@7")


def _write_beir_folder(folder, splits, corpus):
    """A BEIR folder with ``corpus`` and, per split name, the (dataset, query ids) to judge."""
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for d in sorted(corpus):
            out.write(json.dumps({"_id": d, **corpus[d]}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for dataset, qids in splits.values():
            for q in qids:
                out.write(json.dumps({"_id": q, "text": dataset.queries[q]}) + "\n")
    for split, (dataset, qids) in splits.items():
        with (folder / "qrels" / f"{split}.tsv").open("w") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for q in qids:
                for d, grade in dataset.qrels[q].items():
                    out.write(f"{q}\t{d}\t{grade}\n")
    return folder


@pytest.fixture(scope="module")
def attack_splits(scifact):
    """40 SciFact train and 20 test queries, and a corpus of their golds and 40 others."""
    train, test = scifact
    train_q, test_q = list(train.qrels)[:40], list(test.qrels)[:20]
    docs = {d for q in train_q for d in train.qrels[q]} | {d for q in test_q for d in test.qrels[q]}
    docs |= set(list(train.corpus)[:40])
    corpus = {d: train.corpus[d] for d in docs & set(train.corpus)}
    return {"train": (train, train_q), "test": (test, test_q)}, corpus


@pytest.fixture(scope="module")
def scifact_attack_folder(attack_splits, tmp_path_factory):
    """A BEIR folder named scifact with both splits of :func:`attack_splits`."""
    splits, corpus = attack_splits
    return _write_beir_folder(tmp_path_factory.mktemp("attack-data") / "scifact", splits, corpus)


def _poison(*argv):
    import argparse

    from robustir.cli.poison import register

    parser = argparse.ArgumentParser(prog="robustir")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["poison", *argv])
    return args.handler(args)


@pytest.mark.slow
def test_poison_command_writes_passages_and_three_results_entries(
    scifact_attack_folder, tmp_path, capsys
):
    output = tmp_path / "results"
    code = _poison("--model", "minilm", "--dataset", "scifact", "--n-passages", "1",
                   "--iterations", "3", "--seed", "2016", "--candidates", "4",
                   "--passage-length", "8", "--batch-size", "8", "--quiet",
                   "--data-root", str(scifact_attack_folder.parent), "--output", str(output))
    assert code == 0
    printed = capsys.readouterr().out
    assert "hotflip_N1" in printed and "query_text_N1" in printed
    from robustir.results import ResultStore

    summaries = ResultStore(output).read_summaries("corpus_poisoning")
    assert sorted(summaries["variant"]) == ["gold_N1", "hotflip_N1", "query_text_N1"]
    assert summaries["seed"].tolist() == [2016] * 3
    assert summaries["n_queries"].tolist() == [20] * 3
    entry = output / "corpus_poisoning/minilm/scifact/hotflip_N1/seed-2016"
    summary = json.loads((entry / "summary.json").read_text())
    (passages_file,) = (output / "corpus_poisoning_passages/minilm/scifact").glob("*.json")
    assert passages_file.name == ("scifact_train_attacked_documents_seed_2016_minilm_supervised_"
                                  "hotflip_N1_Len8_Iter3_Pool4_InitTrue.json")
    saved = json.loads(passages_file.read_text())
    kept = saved["passages"]["0"]
    assert len(kept["best_adv_passage_ids"]) == 8
    assert summary["validation_similarity"] == [kept["best_sim"]]
    assert summary["initial_validation_similarity"] == [kept["initial_sim"]]
    # the initial passage is replaced only by one of strictly higher validation similarity
    if kept["best_adv_passage_ids"] == kept["initial_ids"]:
        assert kept["best_sim"] == kept["initial_sim"]
    else:
        assert kept["best_sim"] > kept["initial_sim"]
    # ASR@k recomputed from the embeddings: the passage succeeds on a query when fewer than k
    # clean documents score at least as high (a tie goes to the real document)
    test = load_dataset(scifact_attack_folder, "test")
    minilm = Encoder(get_model_spec("minilm"), device="cpu", progress=False)
    for variant, ids in (("hotflip_N1", kept["best_adv_passage_ids"]), ("gold_N1", kept["initial_ids"])):
        expected, undecided = asr_by_hand(minilm, test, ids, (5, 10, 20, 50))
        stored = summaries.set_index("variant").loc[variant]
        for k, value in expected.items():
            assert abs(stored[f"ASR@{k}"] - value) <= undecided[k] + 1e-12, (variant, k)
    assert saved["provenance"]["data_checksum"]


def test_poison_command_rejects_bad_settings_with_a_message(capsys):
    # range checks happen when the arguments are parsed, before any model loads
    with pytest.raises(SystemExit) as exit_status:
        _poison("--model", "minilm", "--dataset", "scifact", "--n-passages", "0",
                "--iterations", "3", "--seed", "1")
    assert exit_status.value.code == 2
    assert "--n-passages: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_nq_is_attacked_with_the_training_qrels_of_nq_train(attack_splits, tmp_path, capsys):
    # BEIR's layout: nq holds the test qrels only, nq-train the training qrels (protocol §5.1)
    splits, corpus = attack_splits
    root = tmp_path / "data"
    _write_beir_folder(root / "nq", {"test": splits["test"]}, corpus)
    _write_beir_folder(root / "nq-train", {"train": splits["train"]}, corpus)
    output = tmp_path / "results"
    assert _poison("--model", "minilm", "--dataset", "nq", "--n-passages", "1", "--iterations", "2",
                   "--seed", "5", "--candidates", "4", "--passage-length", "8", "--batch-size", "8",
                   "--no-baselines", "--quiet", "--data-root", str(root), "--output", str(output)) == 0
    entry = output / "corpus_poisoning/minilm/nq/hotflip_N1/seed-5"
    params = json.loads((entry / "params.json").read_text())
    assert (params["dataset"], params["split"]) == ("nq", "test")
    assert (params["attacker_dataset"], params["attacker_split"]) == ("nq-train", "train")
    (passages_file,) = (output / "corpus_poisoning_passages/minilm/nq").glob("*.json")
    assert passages_file.name.startswith("nq-train_train_attacked_documents_seed_5_minilm_")
