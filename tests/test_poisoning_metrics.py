"""ASR@k on hand-built rankings: cutoffs, the four tie rules, short runs and bad input."""

import pytest
from robustir.metrics.poisoning import (
    attack_success_rate,
    per_query_attack_success,
    rank_with_tie_rule,
    ties_at_cutoff,
)

# q1: adversarial at rank 3; q2: at rank 6; q3: none.
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "adv_doc_0_1": 0.7, "d3": 0.6, "d4": 0.5, "d5": 0.4},
    "q2": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6, "d5": 0.5, "adv_doc_0_0": 0.4},
    "q3": {"d1": 0.9, "d2": 0.8, "d3": 0.7},
}


def test_asr_counts_queries_with_an_adversarial_passage_in_the_top_k():
    assert attack_success_rate(RUN, [2, 3, 5, 6]) == {
        "ASR@2": 0.0, "ASR@3": pytest.approx(1 / 3), "ASR@5": pytest.approx(1 / 3),
        "ASR@6": pytest.approx(2 / 3),
    }
    per_query = per_query_attack_success(RUN, [5, 10])
    assert per_query.to_dict("index") == {
        "q1": {"ASR@5": 1.0, "ASR@10": 1.0},
        "q2": {"ASR@5": 0.0, "ASR@10": 1.0},
        "q3": {"ASR@5": 0.0, "ASR@10": 0.0},
    }


def test_fewer_hits_than_k_are_judged_on_what_there_is_and_no_hits_fail():
    run = {"short": {"d1": 0.3, "adv_doc_0_0": 0.2}, "empty": {}}
    assert attack_success_rate(run, [1, 50]) == {"ASR@1": 0.0, "ASR@50": 0.5}
    assert ties_at_cutoff(run, [1, 50]) == {"ASR@1": 0, "ASR@50": 0}


# The adversarial passage ties with the second real one at the cutoff k = 2.
TIED = {"q": {"d1": 0.9, "adv_doc_0_0": 0.5, "7": 0.5, "d9": 0.1}}


@pytest.mark.parametrize(
    ("tie_rule", "expected"),
    [
        ("adversarial_loses", ["d1", "7", "adv_doc_0_0", "d9"]),
        ("adversarial_wins", ["d1", "adv_doc_0_0", "7", "d9"]),
        # trec_eval: doc id descending as strings, and "adv_doc_0_0" > "7"
        ("trec_eval", ["d1", "adv_doc_0_0", "7", "d9"]),
        # the study: stable sort over the run's order, where the adversarial id comes first
        ("run_order", ["d1", "adv_doc_0_0", "7", "d9"]),
    ],
)
def test_tie_rules_order_a_tie_at_the_cutoff(tie_rule, expected):
    assert rank_with_tie_rule(TIED["q"], tie_rule) == expected
    success = attack_success_rate(TIED, [2], tie_rule=tie_rule)["ASR@2"]
    assert success == (1.0 if expected[1].startswith("adv_doc") else 0.0)


def test_trec_eval_order_loses_ties_against_doc_prefixed_ids():
    run = {"q": {"adv_doc_0_0": 0.5, "doc12": 0.5}}
    assert rank_with_tie_rule(run["q"], "trec_eval") == ["doc12", "adv_doc_0_0"]
    assert attack_success_rate(run, [1], tie_rule="trec_eval") == {"ASR@1": 0.0}
    assert attack_success_rate(run, [1], tie_rule="run_order") == {"ASR@1": 1.0}


def test_ties_at_cutoff_counts_queries_whose_kth_score_continues_below_k():
    run = {
        "tie_at_2": TIED["q"],
        "tie_inside": {"a": 0.9, "b": 0.9, "c": 0.1},  # tie at ranks 1-2, not across k = 2
        "none": {"a": 0.3, "b": 0.2, "c": 0.1},
    }
    assert ties_at_cutoff(run, [1, 2]) == {"ASR@1": 1, "ASR@2": 1}


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="unknown tie rule 'zhong'"):
        attack_success_rate(RUN, tie_rule="zhong")
    with pytest.raises(ValueError, match="positive integers"):
        attack_success_rate(RUN, [0, 5])
    with pytest.raises(ValueError, match="no query"):
        attack_success_rate({})
