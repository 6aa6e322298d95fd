"""trec_eval semantics on hand-computed cases, and `robustir evaluate-run` against pytrec_eval."""

import json
import math

import numpy as np
import pytest
import pytrec_eval

from robustir.cli import main
from robustir.data import BeirFormatError
from robustir.metrics import mean_metrics, per_query_metrics, trec_eval_order
from robustir.trec import read_run

QRELS = {"q1": {"a": 1, "b": 2}, "q2": {"c": 0}}
RUN = {"q1": {"a": 0.5, "b": 0.5, "x": 0.9}, "q2": {"c": 1.0, "d": 0.5}}


def test_ties_are_broken_by_doc_id_descending():
    assert trec_eval_order(RUN["q1"]) == ["x", "b", "a"]
    # the partial sort agrees with the full one at every depth
    assert [trec_eval_order(RUN["q1"], k) for k in (0, 1, 2, 5)] == [[], ["x"], ["x", "b"], ["x", "b", "a"]]


def test_hand_computed_values_with_a_tie():
    frame = per_query_metrics(QRELS, RUN, ["nDCG@10", "Recall@100", "MRR@10", "MAP", "P@1"])
    # ranking x, b, a: DCG = 2/log2(3) + 1/log2(4); IDCG = 2 + 1/log2(3)
    dcg = 2 / math.log2(3) + 1 / 2
    idcg = 2 + 1 / math.log2(3)
    assert frame.loc["q1", "nDCG@10"] == pytest.approx(dcg / idcg)
    assert frame.loc["q1", "MAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert frame.loc["q1", "MRR@10"] == pytest.approx(0.5)
    assert frame.loc["q1", "P@1"] == 0.0 and frame.loc["q1", "Recall@100"] == 1.0
    # a query judged only 0 is evaluated and scores 0
    assert frame.loc["q2"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]
    assert mean_metrics(frame)["nDCG@10"] == pytest.approx(dcg / idcg / 2)


def test_numpy_and_integer_scores_score_as_their_float_values():
    # q1 in numpy float32, q2 mixed int and numpy float64: same values as the Python floats
    run = {"q1": {d: np.float32(s) for d, s in RUN["q1"].items()}, "q2": {"c": 1, "d": np.float64(0.5)}}
    measures = ["nDCG@10", "MAP", "MRR@10"]
    assert per_query_metrics(QRELS, run, measures).equals(per_query_metrics(QRELS, RUN, measures))


def test_mrr_at_k_cuts_the_ranking_in_trec_eval_order():
    qrels = {"q": {"r": 1}}
    run = {"q": {f"d{i:02d}": 1.0 - i / 100 for i in range(10)} | {"r": 0.5}}
    frame = per_query_metrics(qrels, run, ["MRR@10", "MRR"])
    assert frame.loc["q", "MRR@10"] == 0.0 and frame.loc["q", "MRR"] == pytest.approx(1 / 11)


def test_unknown_measure_is_a_clear_error():
    with pytest.raises(ValueError, match="needs a cutoff"):
        per_query_metrics(QRELS, RUN, ["nDCG"])
    with pytest.raises(ValueError, match="unknown measure 'ndcg@10'"):
        per_query_metrics(QRELS, RUN, ["ndcg@10"])


def _write_run(path, run):
    with path.open("w") as out:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(hits.items(), start=1):
                out.write(f"{qid} Q0 {doc} {rank} {score} test\n")


def test_evaluate_run_equals_pytrec_eval(tmp_path, capsys):
    qrels = {"1": {"d1": 2, "d2": 0, "d3": 1}, "2": {"d4": 0}, "3": {"d1": 1}}
    run = {  # tied scores, ranks in the file deliberately disagreeing with the scores
        "1": {"d2": 0.3, "d1": 0.3, "d3": 0.3, "d9": 0.7},
        "2": {"d4": 0.9, "d5": 0.9},
        "3": {"d7": 0.5, "d1": 0.5},
    }
    (tmp_path / "qrels.txt").write_text(
        "".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items() for d, g in docs.items())
    )
    _write_run(tmp_path / "run.txt", run)
    assert main(["evaluate-run", "--qrels", str(tmp_path / "qrels.txt"), "--run",
                 str(tmp_path / "run.txt"), "--measures", "nDCG@10", "MAP", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    reference = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map"}).evaluate(run)
    for qid, values in reference.items():
        assert ours["per_query"][qid]["nDCG@10"] == pytest.approx(values["ndcg_cut_10"])
        assert ours["per_query"][qid]["MAP"] == pytest.approx(values["map"])
    assert ours["per_query"]["2"]["nDCG@10"] == 0.0
    assert ours["mean"]["MAP"] == pytest.approx(sum(v["map"] for v in reference.values()) / 3)


def test_malformed_run_file_names_the_line(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("1 Q0 d1 1 0.5 tag\n1 Q0 d2 2 high tag\n")
    with pytest.raises(BeirFormatError, match=r"run.txt:2: score 'high' is not a number"):
        read_run(path)
    path.write_text("1 Q0 d1 1 0.5\n")
    with pytest.raises(BeirFormatError, match=r"run.txt:1: a run line needs 6 columns"):
        read_run(path)
