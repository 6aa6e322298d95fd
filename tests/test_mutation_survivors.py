"""Hand cases that kill the mutants ``make mutation`` found alive: exact error messages,
boundaries, the fields of the results, and inputs that tell a mutant from the code (unsigned
ranks, resamples with a zero clean mean, lists of unequal length). The survivors that no input
can tell from the code are listed with their reasons in ``scripts/mutation_equivalents.toml``."""

from __future__ import annotations

import json
import logging
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robustir.metrics.stability import (
    drop_rates,
    jaccard_at_k,
    kendall_tau_b,
    kendall_tau_union,
    query_change_fractions,
    rank_biased_overlap,
    rank_stability,
)
from robustir.stats.resampling import (
    bootstrap_drop_rates,
    paired_randomisation_test,
    paired_tests,
    wilcoxon_test,
)

# -- metrics/stability.py -------------------------------------------------------------------------


def test_mismatched_queries_are_named_three_at_a_time():
    clean = pd.Series(1.0, index=["a", "b", "c", "d"])
    other = pd.Series(1.0, index=["w", "x", "y", "z"])
    with pytest.raises(ValueError) as error:
        drop_rates(clean, {3: other})
    assert str(error.value) == ("seed 3: the clean and perturbed per-query scores cover different "
                                "queries (e.g. ['a', 'b', 'c']); evaluate both on the same query set")
    with pytest.raises(ValueError, match=r"^query_change_fractions: the clean and perturbed"):
        query_change_fractions(clean, other)
    with pytest.raises(ValueError) as error:
        rank_stability({q: {} for q in "abcd"}, {q: {} for q in "wxyz"})
    assert str(error.value) == "the clean and perturbed runs cover different queries (e.g. ['a', 'b', 'c'])"


def test_drop_rates_errors_and_fields():
    with pytest.raises(ValueError) as error:
        drop_rates(pd.Series({"a": 1.0}), {})
    assert str(error.value) == "drop_rates needs at least one perturbed seed"
    with pytest.raises(ValueError) as error:
        drop_rates({1: pd.Series({"a": 1.0})}, {2: pd.Series({"a": 1.0})})
    assert str(error.value).endswith("give one clean series per perturbed seed, or a single "
                                     "series shared by all seeds")
    result = drop_rates(pd.Series({"a": 0.8, "b": 0.4}), {1: pd.Series({"a": 0.6, "b": 0.3})})
    assert result.perturbed == {1: pytest.approx(0.45)} and result.clean_per_seed == {1: pytest.approx(0.6)}


def test_change_fractions_of_one_query_and_at_the_tolerance():
    assert query_change_fractions(pd.Series({"a": 0.5}), pd.Series({"a": 0.25})) == {
        "drop": 1.0, "equal": 0.0, "rise": 0.0}
    # |Δ| equal to the tolerance counts as equal (binary-exact values: 0.5 − 0.25 = 0.25)
    clean = pd.Series({"a": 0.5, "b": 0.5, "c": 0.5})
    perturbed = pd.Series({"a": 0.25, "b": 0.75, "c": 0.5})
    assert query_change_fractions(clean, perturbed, tolerance=0.25) == {
        "drop": 0.0, "equal": 1.0, "rise": 0.0}


def test_jaccard_of_disjoint_lists_is_zero():
    assert jaccard_at_k(["a", "b"], ["c", "d"], k=2) == 0.0


def test_rank_biased_overlap_edge_cases():
    assert rank_biased_overlap([], []) == 1.0
    assert rank_biased_overlap([], ["a"]) == 0.0 and rank_biased_overlap(["a"], []) == 0.0
    for p in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=rf"RBO persistence p must be in \(0, 1\), got {p}"):
            rank_biased_overlap(["a"], ["a"], p=p)


def test_rank_stability_reads_the_top_k_and_the_rbo_depth():
    # clean a > b > c > d; perturbed b > a > d > c: the top-2 sets agree, the top-1 sets do not
    clean = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    perturbed = {"q": {"b": 4.0, "a": 3.0, "d": 2.0, "c": 1.0}}
    one = rank_stability(clean, perturbed, k=1, rbo_depth=1, p=0.5).loc["q"]
    assert one["Jaccard@1"] == 0.0 and one["RBO@1"] == 0.0
    # τ over the union {a, b} of the top-1 lists: positions (1, 2) and (2, 1) → −1
    assert one["KendallTau@1"] == -1.0
    two = rank_stability(clean, perturbed, k=2, rbo_depth=2, p=0.5).loc["q"]
    # RBO_ext of (a, b) and (b, a), p = 0.5: X1 = 0, X2 = 2 → (1 − p)/p · (X2/2)·p² + (X2/2)·p² = 0.5
    assert two["Jaccard@2"] == 1.0 and two["RBO@2"] == pytest.approx(0.5)


def test_kendall_tau_b_hand_cases():
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == 1.0
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    # pairs (12, 13, 23): x signs (+, +, +), y signs (+, 0, −) → (1 + 0 − 1) / √(3 · 2) = 0
    assert kendall_tau_b([1, 2, 3], [1, 2, 1]) == 0.0
    # x signs (+, +, 0), y signs (+, +, +): 2 / √(2 · 3)
    assert kendall_tau_b([1, 2, 2], [1, 2, 3]) == pytest.approx(2 / 6**0.5)
    assert np.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))


def test_kendall_tau_union_ranks_absent_documents_last():
    # union of the top-2 lists {a, b, c}; a is absent from the second ranking (length 2 → 3)
    assert kendall_tau_union(["a", "b"], ["b", "c"], k=2) == pytest.approx(
        kendall_tau_b([1, 2, 3], [3, 1, 2]))
    assert kendall_tau_union(["a", "b", "c"], ["a", "b", "c"], k=1) != kendall_tau_union(
        ["a", "b", "c"], ["a", "c", "b"], k=3)


# -- stats/resampling.py --------------------------------------------------------------------------


def test_randomisation_test_fields_and_default_resamples():
    clean = np.linspace(0.2, 0.9, 30)
    test = paired_randomisation_test(clean, clean - 0.1, rng=np.random.default_rng(0))
    assert test.test == "randomisation" and test.n_queries == 30
    assert test.statistic == pytest.approx(-0.1)
    # every sign flip lowers |mean| below 0.1: p = 1 / (1 + B) with the default B = 10,000
    assert test.p_value == pytest.approx(1 / 10_001)


def test_wilcoxon_hand_case_with_a_zero_difference():
    """Differences (0, 0.1, −0.2, 0.3, 0.4, 0.5, −0.6): the zero is dropped, the ranks of the
    other six are 1…6, W+ = 1 + 3 + 4 + 5 = 13, W− = 2 + 6 = 8; the two-sided exact p of
    W = 8 with n = 6 is 2 · #{subsets of 1…6 summing to at most 8} / 2⁶ = 2 · 22 / 64
    (sums 0…8 have 1, 1, 1, 2, 2, 3, 4, 4, 4 subsets)."""
    clean = np.full(7, 0.5)
    perturbed = clean + np.array([0.0, 0.1, -0.2, 0.3, 0.4, 0.5, -0.6])
    test = wilcoxon_test(clean, perturbed)
    assert (test.test, test.n_queries) == ("wilcoxon", 6)
    assert test.statistic == 8.0 and test.p_value == pytest.approx(44 / 64)
    unchanged = wilcoxon_test(clean, clean)
    assert (unchanged.statistic, unchanged.p_value, unchanged.n_queries) == (0.0, 1.0, 0)


def test_paired_tests_check_the_seeds_and_pass_the_resamples_on():
    clean = np.linspace(0.2, 0.9, 30)
    with pytest.raises(ValueError) as error:
        paired_tests(clean, np.vstack([clean, clean]), seeds=[1], rng=np.random.default_rng(0))
    assert str(error.value) == "1 seeds for 2 rows of perturbed scores"
    table = paired_tests(clean, (clean - 0.1)[None, :], seeds=[7], rng=np.random.default_rng(0),
                         n_resamples=99)
    randomisation = table[table.test == "randomisation"]
    assert randomisation["p_value"].tolist() == pytest.approx([1 / 100, 1 / 100])
    assert paired_tests(clean, (clean - 0.1)[None, :], seeds=[7],
                        rng=np.random.default_rng(0))["p_value"].iloc[0] == pytest.approx(1 / 10_001)


def test_rank_biased_overlap_extrapolates_an_uneven_pair():
    """S = (a, x), L = (a, b, c), p = 0.5 (Webber et al. eq. 32): X1 = X2 = X3 = 1, s = 2, l = 3;
    Σ X_d/d·p^d = 1/2 + 1/8 + 1/24, tail X_s·(3 − 2)/(2·3)·p³ = 1/48, so (1 − p)/p · 33/48
    + ((X3 − X2)/3 + X2/2)·p³ = 33/48 + 1/16 = 0.75."""
    assert rank_biased_overlap(["a", "x"], ["a", "b", "c"], p=0.5) == pytest.approx(0.75)
    assert rank_biased_overlap(["a", "b", "c"], ["a", "x"], p=0.5) == pytest.approx(0.75)


def test_kendall_tau_of_two_items():
    assert kendall_tau_b([1, 2], [1, 2]) == 1.0  # the denominator is exactly 1
    assert kendall_tau_union(["a", "b"], ["b", "a"], k=2) == -1.0  # a union of two


def test_rank_stability_reads_k_for_kendall_and_names_its_index():
    clean = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    perturbed = {"q": {"b": 4.0, "a": 3.0, "d": 2.0, "c": 1.0}}
    frame = rank_stability(clean, perturbed, k=1)
    assert frame.index.name == "query_id"
    # over the whole lists τ would be (4 − 2)/6; over the top-1 union {a, b} it is −1
    assert frame.loc["q", "KendallTau@1"] == -1.0


# -- metrics/poisoning.py ---------------------------------------------------------------------------


def test_tie_rule_errors_name_every_rule_and_reject_non_integer_cutoffs():
    from robustir.metrics.poisoning import attack_success_rate

    run = {"q": {"adv_doc_0_0": 0.5, "d": 0.4}}
    with pytest.raises(ValueError) as error:
        attack_success_rate(run, tie_rule="zhong")
    assert str(error.value) == ("unknown tie rule 'zhong'; use one of adversarial_loses, "
                                "adversarial_wins, trec_eval, run_order")
    for cutoffs in ([True], [2.5], [0]):
        with pytest.raises(ValueError, match="cutoffs must be positive integers"):
            attack_success_rate(run, cutoffs)
    with pytest.raises(ValueError) as error:
        attack_success_rate({})
    assert str(error.value) == "the run has no query; ASR@k is undefined"


def test_run_order_keeps_a_real_document_ahead_of_a_tied_adversarial_one():
    from robustir.metrics.poisoning import rank_with_tie_rule

    hits = {"d1": 0.5, "adv_doc_0_0": 0.5}
    assert rank_with_tie_rule(hits, "run_order") == ["d1", "adv_doc_0_0"]
    assert rank_with_tie_rule(hits, "adversarial_wins") == ["adv_doc_0_0", "d1"]
    # the default rule: the adversarial passage loses the tie
    assert rank_with_tie_rule({"adv_doc_0_0": 0.5, "d1": 0.5, "d2": 0.9}) == ["d2", "d1", "adv_doc_0_0"]


def test_a_custom_adversarial_prefix_decides_ties_and_success():
    from robustir.metrics.poisoning import attack_success_rate, per_query_attack_success

    run = {"q": {"evil_1": 0.5, "d": 0.5}}  # the adversarial id first in the run's order
    assert attack_success_rate(run, [1], adversarial_prefix="evil") == {"ASR@1": 0.0}
    assert attack_success_rate(run, [1], tie_rule="run_order", adversarial_prefix="evil") == {"ASR@1": 1.0}
    frame = per_query_attack_success({"q": {"d": 0.9, "evil_1": 0.5}}, [1, 2], adversarial_prefix="evil")
    assert frame.index.name == "query_id" and frame.to_dict("index") == {"q": {"ASR@1": 0.0, "ASR@2": 1.0}}
    assert list(per_query_attack_success({}, [5]).columns) == ["ASR@5"]


def test_ties_at_cutoff_counts_every_tied_query():
    from robustir.metrics.poisoning import ties_at_cutoff

    tied = {"a": 0.5, "b": 0.5}
    assert ties_at_cutoff({"q1": tied, "q2": tied, "q3": {"a": 0.9, "b": 0.1}}, [1]) == {"ASR@1": 2}


# -- perturb/variation.py ---------------------------------------------------------------------------


def test_the_per_query_stream_is_pinned():
    """The seed is the first 8 bytes (big-endian) of SHA-256("seed␟dataset␟qid"): changing it
    would silently change every variant file made with rng_scope="query"."""
    import hashlib
    import random

    from robustir.perturb import query_rng

    digest = hashlib.sha256("27\x1ftoy\x1fq4".encode()).digest()
    expected = random.Random(int.from_bytes(digest[:8], byteorder="big"))
    assert query_rng(27, "toy", "q4").random() == expected.random()


def test_wilcoxon_of_one_query_and_resampling_of_none():
    """One non-zero difference: W+ = 0, W− = 1, so W = 0 and the exact two-sided p is
    2 · P(W ≤ 0) = 2 · 1/2 = 1. No query at all is an error, whatever the test."""
    assert wilcoxon_test([0.5], [0.25]) == wilcoxon_test([0.5], [0.75])
    test = wilcoxon_test([0.5], [0.25])
    assert (test.statistic, test.p_value, test.n_queries) == (0.0, 1.0, 1)
    with pytest.raises(ValueError) as error:
        bootstrap_drop_rates([], np.empty((1, 0)), rng=np.random.default_rng(0))
    assert str(error.value) == "no queries to resample"


def test_bootstrap_draws_exactly_the_resamples_asked_for():
    clean = np.linspace(0.2, 0.9, 12)
    perturbed = (clean - 0.05)[None, :]
    per_seed, mean = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(1))
    assert per_seed[0].n_resamples == mean.n_resamples == 1000  # the default B
    # B = 250 is not a multiple of the 200-resample chunks
    _, mean = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(1), n_resamples=250)
    assert mean.n_resamples == 250 and isinstance(mean.n_resamples, int)


def test_resamples_with_a_zero_clean_mean_are_left_out_quietly_and_logged(caplog):
    """Queries with clean scores (0, 1): a resample that draws only the first query has a clean
    mean of 0 (about a quarter of them), where seed 1's drop rate would be −0.5/0 and seed 2's
    0/0. Those resamples are dropped for every seed without a numpy warning, and the log says
    how many of the B were dropped."""
    clean = np.array([0.0, 1.0])
    perturbed = np.array([[0.5, 1.0], [0.0, 0.5]])
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, "robustir.stats.resampling"):
        warnings.simplefilter("error")
        per_seed, mean = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(3))
    dropped = 1000 - mean.n_resamples
    assert 150 < dropped < 350  # binomial(1000, 1/4)
    assert [r.n_resamples for r in per_seed] == [mean.n_resamples] * 2
    assert all(np.isfinite([r.low, r.high]).all() for r in [*per_seed, mean])
    assert [r.getMessage() for r in caplog.records] == [
        f"{dropped} of 1000 resamples have a zero clean mean and are left out"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "robustir.stats.resampling"):
        bootstrap_drop_rates([0.5, 1.0], [[0.5, 0.5]], rng=np.random.default_rng(3))
    assert caplog.records == []


# -- metrics/stability.py (second run) -------------------------------------------------------------


def test_rank_biased_overlap_of_lists_two_or_more_apart_in_length():
    """Webber et al. eq. 32 with s = 1 or 2 and l = s + 2, p = 0.5 (so (1 − p)/p = 1).

    S = (a), L = (a, b, c): X1 = X2 = X3 = 1; Σ X_d/d·p^d = 1/2 + 1/8 + 1/24; the tail
    X_s·(d − s)/(s·d)·p^d adds 1/8 (d = 2) + 1/12 (d = 3); the last term is (0/3 + 1/1)·p³ = 1/8:
    RBO_ext = 1, a list that agrees with the other's prefix is extrapolated as full agreement.
    S = (a, x), L = (a, b, c, d): X_d = 1 for d = 1…4; Σ = 1/2 + 1/8 + 1/24 + 1/64 = 131/192;
    tail 1/48 + 1/64 = 7/192; last term (0/4 + 1/2)·p⁴ = 6/192: RBO_ext = 144/192 = 0.75."""
    assert rank_biased_overlap(["a"], ["a", "b", "c"], p=0.5) == pytest.approx(1.0)
    assert rank_biased_overlap(["a", "x"], ["a", "b", "c", "d"], p=0.5) == pytest.approx(0.75)


def test_kendall_tau_compares_unsigned_ranks_as_numbers():
    """Ranks held as unsigned integers (1 − 2 wraps to 255 in uint8) still give τ = ±1."""
    up = np.array([1, 2, 3], dtype=np.uint8)
    assert kendall_tau_b(up, [1, 2, 3]) == 1.0 and kendall_tau_b([1, 2, 3], up) == 1.0
    assert kendall_tau_b(up, [3, 2, 1]) == -1.0 and kendall_tau_b([3, 2, 1], up) == -1.0


def test_kendall_tau_of_a_constant_list_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))
        assert np.isnan(kendall_tau_b([], []))


# -- metrics/__init__.py ---------------------------------------------------------------------------


def test_every_cut_measure_needs_its_cutoff():
    from robustir.metrics import per_query_metrics

    for measure in ("nDCG", "Recall", "P"):
        with pytest.raises(ValueError) as error:
            per_query_metrics({"q": {"d": 1}}, {"q": {"d": 1.0}}, [measure])
        assert str(error.value) == f"measure {measure!r} needs a cutoff, e.g. {measure}@10"


def test_map_at_k_is_cut_and_map_is_not():
    """Relevant r1 at rank 1 and r2 at rank 3 of 2 relevant: AP = (1/1 + 2/3)/2 = 5/6; cut at
    rank 2, AP@2 = (1/1)/2 = 1/2 (trec_eval's map_cut divides by all relevant documents)."""
    from robustir.metrics import per_query_metrics

    run = {"q": {"r1": 0.9, "d": 0.8, "r2": 0.7}}
    frame = per_query_metrics({"q": {"r1": 1, "r2": 1}}, run, ["MAP", "MAP@2"])
    assert frame.loc["q", "MAP"] == pytest.approx(5 / 6)
    assert frame.loc["q", "MAP@2"] == pytest.approx(0.5)
    assert frame.index.name == "query_id"


def test_a_query_without_judged_documents_leaves_an_empty_float_frame():
    from robustir.metrics import per_query_metrics

    frame = per_query_metrics({"q": {}, "z": {"d": 1}}, {"q": {"d": 1.0}}, ["nDCG@10", "MRR@10"])
    assert frame.empty and list(frame.columns) == ["nDCG@10", "MRR@10"]
    assert (frame.dtypes == np.float64).all()


# -- perturb/variation.py and perturb/family.py (second run) ---------------------------------------


@pytest.fixture
def loud_family():
    """A family whose key, display name and alias all differ in more than case, and whose
    build needs the device "meta"; forgotten after the test."""
    from robustir.perturb import FamilyUnavailable, register_family, variation

    def build(*, encoder=None, device="cpu"):
        if device != "meta":
            raise FamilyUnavailable("loud", f"needs the device 'meta', not {device!r}")
        return [], {"volume": 11}

    register_family("loud", "Raised Voice", aliases=("Shout",))(build)
    yield
    variation.FAMILIES.pop("loud")
    variation.FAMILY_NAMES.pop("loud")
    for name in ("loud", "raised voice", "shout"):
        variation._ALIASES.pop(name)


def test_a_family_is_found_by_key_display_name_or_alias_and_built_with_them(loud_family):
    from robustir.perturb import FAMILIES, build_family, resolve_family

    assert [resolve_family(n) for n in ("LOUD", "raised VOICE", "shout")] == ["loud"] * 3
    assert FAMILIES["loud"].aliases == ("Shout",)
    family = build_family("Raised Voice", device="meta")
    assert (family.key, family.display_name, family.generators) == ("loud", "Raised Voice", ())


def test_family_status_passes_the_build_options_and_names_the_family(loud_family):
    from robustir.perturb import FamilyStatus, FamilyUnavailable, family_status

    assert family_status("shout", device="meta") == FamilyStatus("loud", True, "")
    assert family_status("shout") == FamilyStatus("loud", False, "needs the device 'meta', not 'cpu'")
    unavailable = FamilyUnavailable("loud", "why")
    assert (unavailable.family, unavailable.reason) == ("loud", "why")
    assert str(unavailable) == "query-variation family 'loud' is unavailable: why"


def test_a_plain_generator_does_not_rehearse():
    from robustir.perturb import QueryGenerator

    with QueryGenerator().rehearsal() as rehearses:
        assert rehearses is False


def _one_variation_set(provenance: dict):
    from robustir.perturb import QueryVariation, VariationSet

    variation = QueryVariation("q1", "café au lait", "cafe au lait", "g", True)
    return VariationSet({"q1": variation}, provenance)


def test_a_variation_set_is_saved_in_new_folders_as_utf8_with_a_sorted_indented_sidecar(tmp_path):
    path = tmp_path / "new" / "deeper" / "variants.jsonl"
    sidecar = _one_variation_set({"seed": 5, "family": "x"}).save(path)
    assert sidecar == tmp_path / "new" / "deeper" / "variants.provenance.json"
    assert '"text": "café au lait"' in path.read_text(encoding="utf-8")
    assert sidecar.read_text(encoding="utf-8") == '{\n  "family": "x",\n  "seed": 5\n}\n'


def test_a_blank_line_in_a_variant_file_is_skipped_not_the_end(tmp_path):
    from robustir.perturb import VariationSet

    path = tmp_path / "variants.jsonl"
    _one_variation_set({}).save(path)
    record = {"_id": "q2", "text": "b", "original": "b", "generator": "g", "changed": False}
    path.write_text(path.read_text(encoding="utf-8") + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    assert list(VariationSet.load(path).variations) == ["q1", "q2"]
    path.write_text('{"_id": "q1"}\n', encoding="utf-8")
    with pytest.raises(ValueError) as error:
        VariationSet.load(path)
    assert str(error.value) == (f"{path}:1: field 'text' missing or not a str; regenerate the file "
                                "with `robustir vary`")


def test_a_variant_file_is_read_as_utf8_under_an_ascii_locale(tmp_path):
    """The file and its sidecar are UTF-8; a process whose locale encoding is ASCII (C locale,
    UTF-8 mode off) must still read them, as it must under Windows' cp1252. The sidecar is
    rewritten unescaped, as an editor would save it."""
    import os
    import subprocess
    import sys

    from robustir.perturb import VariationSet
    from robustir.perturb.variation import provenance_path

    path = tmp_path / "variants.jsonl"
    _one_variation_set({"note": "naïve"}).save(path)
    sidecar = provenance_path(path)
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text(encoding="utf-8")), ensure_ascii=False),
                       encoding="utf-8")
    assert "naïve" in sidecar.read_text(encoding="utf-8")
    assert VariationSet.load(path).provenance == {"note": "naïve"}
    read = ("import sys; from robustir.perturb import VariationSet; s = VariationSet.load(sys.argv[1]); "
            "print(ascii(s.variations['q1'].text), ascii(s.provenance['note']))")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", read, str(path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["'caf\\xe9", "au", "lait'", "'na\\xefve'"]


# -- perturb/synonyms.py ---------------------------------------------------------------------------


def _toy_encoder():
    """An encoder's vocabulary and input embeddings, at toy size: 'cell' (norm 5), 'tiny'
    (norm 0.05) and 'void' (norm 0) are whole words; the others are not."""
    import torch

    vocabulary = {"[CLS]": 0, "cell": 1, "##ing": 2, "tiny": 3, "Upper": 4, "void": 5}
    table = torch.tensor([[1.0, 1.0], [3.0, 4.0], [1.0, 0.0], [0.03, 0.04], [0.0, 1.0], [0.0, 0.0]])
    return SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocabulary),
                           input_embeddings=torch.nn.Embedding.from_pretrained(table),
                           spec=SimpleNamespace(hf_id="toy/words"))


def test_word_vectors_of_an_encoder_are_unit_float32_rows_of_its_whole_words():
    from robustir.perturb.synonyms import WordEmbedding

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedding = WordEmbedding.from_encoder(_toy_encoder())
    assert embedding.words == ("cell", "tiny", "void")
    assert embedding.vectors.dtype == np.float32
    # (3, 4)/5 and (0.03, 0.04)/0.05 are both (0.6, 0.8); the zero row stays zero
    np.testing.assert_allclose(embedding.vectors, [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert embedding.source == "toy/words input embeddings (3 whole words)"


def test_prepare_looks_up_the_lower_cased_words_of_the_queries_ahead():
    from robustir.perturb.synonyms import EmbeddingNeighbourSwap, WordEmbedding

    embedding = WordEmbedding(("cell", "cells", "growth"), np.eye(3, dtype=np.float32), "toy")
    swap = EmbeddingNeighbourSwap(embedding)
    swap.prepare(["Cell Growth"])
    assert {word for word, _ in embedding._found} == {"cell", "growth"}


def test_the_wordnet_swap_has_a_similarity_constraint_exactly_when_given_an_encoder():
    from robustir.perturb.family import FamilyUnavailable
    from robustir.perturb.synonyms import SentenceSimilarity, WordEmbedding, synonym_generators

    embedding = WordEmbedding(("cell",), np.ones((1, 2), dtype=np.float32), "toy")
    try:
        _, constrained = synonym_generators(lambda texts: np.ones((len(texts), 2)), embedding)
    except FamilyUnavailable as unavailable:
        pytest.skip(unavailable.reason)
    assert isinstance(constrained.post_constraint, SentenceSimilarity)
    _, free = synonym_generators(None, embedding)
    assert free.post_constraint is None


# -- perturb/reorder.py, typos.py, augment.py ------------------------------------------------------


def test_a_two_word_query_swaps_its_words():
    from robustir.perturb.reorder import WordInnerSwap
    from robustir.perturb.words import query_words

    words = query_words("aspirin stroke")
    assert WordInnerSwap().edits(words, 0, random.Random(0)) == [{0: "stroke", 1: "aspirin"}]
    assert WordInnerSwap().edits(query_words("aspirin"), 0, random.Random(0)) == []


def test_keyboard_neighbours_keep_the_case_of_the_key():
    from robustir.perturb.typos import keyboard_neighbours

    # the keys around "a" on a QWERTY keyboard
    assert sorted(keyboard_neighbours("a")) == sorted("qwszx")
    assert sorted(keyboard_neighbours("A")) == sorted("QWSZX")
    assert keyboard_neighbours("7") == ""


def test_a_neighbouring_swap_of_a_three_letter_word_can_swap_either_pair():
    from robustir.perturb.typos import NeighbouringCharacterSwap

    swap = NeighbouringCharacterSwap()
    assert {swap.misspell("abc", random.Random(seed)) for seed in range(40)} == {"bac", "acb"}


def test_a_key_without_neighbours_is_replaced_by_a_letter():
    from robustir.perturb.typos import FixedQwertySubstitution

    substitute = FixedQwertySubstitution()
    replacements = {c for seed in range(60) for c in substitute.misspell("777", random.Random(seed))} - {"7"}
    assert replacements and replacements <= set("abcdefghijklmnopqrstuvwxyz")


def test_an_identity_edit_is_dropped_without_dropping_the_edits_after_it():
    from robustir.perturb.augment import WordTransformation, augment

    class EchoThenShout(WordTransformation):
        """For each word, first the word itself (dropped), then its upper-cased form."""

        name = "echo_then_shout"

        def edits(self, words, index, rng):
            return [{index: words[index].text}, {index: words[index].text.upper()}]

    assert augment("aspirin", EchoThenShout(), random.Random(0)) == "ASPIRIN"


def test_the_post_constraint_is_never_asked_about_no_candidates():
    """Three candidate edits, all rejected: batches of 1 and 2 cover them, and no empty batch
    follows (a sentence encoder would be run on nothing)."""
    from robustir.perturb.augment import WordTransformation, augment

    batches = []

    def reject_all(original, candidates):
        assert candidates, "the constraint was called with no candidates"
        batches.append(len(candidates))
        return [False] * len(candidates)

    class Shout(WordTransformation):
        name = "shout"
        post_constraint = staticmethod(reject_all)

        def edits(self, words, index, rng):
            return [{index: words[index].text.upper()}]

    assert augment("aspirin lowers stroke", Shout(), random.Random(0)) == "aspirin lowers stroke"
    assert batches == [1, 2]


# -- encode.py: pooling and the head ---------------------------------------------------------------


def test_prompt_mean_pooling_without_a_prompt_length_is_the_plain_mean():
    import torch

    from robustir.encode import pool

    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]])
    mask = torch.tensor([[1, 1, 1]])
    assert pool(hidden, mask, "prompt_mean").tolist() == [[3.0, 2.0]]
    assert pool(hidden, mask, "prompt_mean", prompt_length=2).tolist() == [[5.0, 4.0]]
    with pytest.raises(ValueError) as error:
        pool(hidden, torch.tensor([[0, 1, 1]]), "prompt_mean")
    assert str(error.value) == "prompt_mean pooling needs right padding (protocol §1.4.3)"


def test_the_head_pools_the_spec_layer_after_the_prompt():
    """Three token states per layer; the spec pools layer 1 after a one-token prompt:
    mean of (2, 2) and (4, 0) = (3, 1), normalised (3, 1)/√10."""
    import dataclasses

    import torch

    from robustir.encode import Encoder
    from robustir.models import get_model_spec

    layer_1 = torch.tensor([[[9.0, 9.0], [2.0, 2.0], [4.0, 0.0]]])
    output = SimpleNamespace(hidden_states=(torch.zeros(1, 3, 2), layer_1, torch.ones(1, 3, 2)),
                             last_hidden_state=torch.ones(1, 3, 2))
    spec = dataclasses.replace(get_model_spec("minilm"), layer=1, pooling="prompt_mean", normalize=True)
    vector = Encoder._head(output, torch.ones(1, 3, dtype=torch.long), spec, 1)
    np.testing.assert_allclose(vector.numpy(), [[3 / 10**0.5, 1 / 10**0.5]], rtol=1e-6)


# -- third run: metrics/__init__.py, stats/resampling.py, perturb/synonyms.py, llm_paraphrase.py --


def test_a_run_and_qrels_without_a_common_query_are_refused_with_three_ids_of_each():
    from robustir.metrics import per_query_metrics

    qrels = {f"q{i}": {"d": 1} for i in range(1, 5)}
    run = {f"q{i}": {"d": 1.0} for i in range(5, 9)}
    with pytest.raises(ValueError) as refused:
        per_query_metrics(qrels, run, ["nDCG@10"])
    assert str(refused.value) == (
        "no query in common: the run has hits for 4 queries, the qrels judge 4, and no query id "
        "is in both (run e.g. ['q5', 'q6', 'q7'], qrels e.g. ['q1', 'q2', 'q3']); check that both "
        "use the same query ids")


@pytest.mark.parametrize("as_text", ["clean", "perturbed"])
def test_scores_given_as_text_are_read_as_numbers(as_text):
    """Per-query scores read from a CSV without conversion (strings) give the numbers' results."""
    clean, perturbed = np.array([0.5, 0.25, 1.0, 0.75]), np.array([[0.25, 0.25, 0.5, 1.0]])
    text = {"clean": clean.astype(str), "perturbed": perturbed.astype(str)}
    given = {"clean": clean, "perturbed": perturbed, as_text: text[as_text]}
    expected = paired_randomisation_test(clean, perturbed, rng=np.random.default_rng(3), n_resamples=200)
    assert paired_randomisation_test(given["clean"], given["perturbed"], rng=np.random.default_rng(3),
                                     n_resamples=200) == expected
    _, interval = bootstrap_drop_rates(given["clean"], given["perturbed"], rng=np.random.default_rng(0),
                                       n_resamples=50)
    _, reference = bootstrap_drop_rates(clean, perturbed, rng=np.random.default_rng(0), n_resamples=50)
    assert interval == reference


def test_a_window_wider_than_the_query_is_the_whole_query():
    """TextAttack's rule near the ends: the window never reaches outside the query's words."""
    from robustir.perturb.synonyms import text_window
    from robustir.perturb.words import query_words

    text = "aspirin lowers stroke risk"
    words = query_words(text)
    assert text_window(words, text, 0, 15) == text  # clamped at the start
    assert text_window(words, text, 3, 5) == text  # clamped at the end, starting at word 0
    assert text_window(words, text, 3, 3) == "lowers stroke risk"


def test_a_candidate_loses_single_quotes_and_backticks_and_keeps_other_letters():
    from robustir.perturb.llm_paraphrase import clean_candidate

    assert clean_candidate("'Aspirin prevents strokes.'") == "Aspirin prevents strokes."
    assert clean_candidate("`Aspirin prevents strokes`") == "Aspirin prevents strokes"
    assert clean_candidate("''") == "" and clean_candidate("\"'x'\"") == "x"
    assert clean_candidate("X-rays expose X") == "X-rays expose X"
    assert clean_candidate("First line\nsecond line\nthird line") == "First line"


def test_copy_key_is_the_lower_case_words_single_spaced():
    from robustir.perturb.llm_paraphrase import copy_key

    assert copy_key("Vitamin D, lowers  fracture-risk!") == "vitamin d lowers fracture risk"


@pytest.mark.parametrize("field, value", [
    ("top_p", 1.0), ("min_length_ratio", 0.0), ("max_length_ratio", 0.5), ("max_tries", 1),
    ("batch_size", 1), ("dtype", "bfloat16"), ("dtype", "float32"),
])
def test_paraphrase_settings_accept_their_boundaries(field, value):
    from robustir.perturb.llm_paraphrase import ParaphraseSettings

    settings = ParaphraseSettings(**{field: value, **({"min_length_ratio": 0.5} if field == "max_length_ratio" else {})})
    assert getattr(settings, field) == value


@pytest.mark.parametrize("field, value, message", [
    ("top_p", 0.0, "ParaphraseSettings.top_p must lie in (0, 1], got 0.0"),
    ("min_length_ratio", 2.0, "ParaphraseSettings needs 0 <= min_length_ratio <= max_length_ratio, "
                              "got 2.0 and 1.5"),
    ("max_tries", True, "ParaphraseSettings.max_tries must be a positive integer, got True"),
    ("max_tries", 2.0, "ParaphraseSettings.max_tries must be a positive integer, got 2.0"),
    ("max_tries", 0, "ParaphraseSettings.max_tries must be a positive integer, got 0"),
])
def test_paraphrase_settings_refuse_with_the_field_and_value(field, value, message):
    from robustir.perturb.llm_paraphrase import ParaphraseSettings

    with pytest.raises(ValueError) as refused:
        ParaphraseSettings(**{field: value})
    assert str(refused.value) == message


class _WordNetOfVersion:
    def __init__(self, version: str):
        self.version = version

    def get_version(self) -> str:
        return self.version


def test_check_wordnet_accepts_3_0_and_names_the_family_and_the_problem_otherwise(monkeypatch):
    from robustir.perturb import synonyms
    from robustir.perturb.family import FamilyUnavailable

    monkeypatch.setattr(synonyms, "english_wordnet", lambda: _WordNetOfVersion("3.0"))
    assert synonyms.check_wordnet() is None
    monkeypatch.setattr(synonyms, "english_wordnet", lambda: _WordNetOfVersion("3.1"))
    with pytest.raises(FamilyUnavailable) as other:
        synonyms.check_wordnet()
    assert (other.value.family, other.value.reason) == ("synonym", "NLTK found WordNet 3.1; the study uses 3.0")

    def missing():
        raise LookupError("Resource wordnet not found")

    monkeypatch.setattr(synonyms, "english_wordnet", missing)
    with pytest.raises(FamilyUnavailable) as absent:
        synonyms.check_wordnet()
    assert absent.value.family == "synonym"
    assert absent.value.reason == f"{synonyms._WORDNET_HELP} (Resource wordnet not found)"


def test_synonym_generators_wrap_the_encoder_and_warn_only_without_one(monkeypatch, caplog):
    from robustir.perturb import synonyms

    monkeypatch.setattr(synonyms, "check_wordnet", lambda: None)  # checked by the test above
    embedding = synonyms.WordEmbedding(("cell",), np.ones((1, 2), dtype=np.float32), "toy")

    def encoder(texts):
        return np.ones((len(texts), 2))

    with caplog.at_level(logging.WARNING, logger=synonyms.__name__):
        neighbours, constrained = synonyms.synonym_generators(encoder, embedding)
    assert caplog.messages == []
    assert neighbours.embedding is embedding
    assert isinstance(constrained.post_constraint.encode, synonyms.RememberedSentences)
    assert constrained.post_constraint.encode.encode is encoder
    with caplog.at_level(logging.WARNING, logger=synonyms.__name__):
        _, free = synonyms.synonym_generators(None, embedding)
    assert free.post_constraint is None
    assert caplog.messages == ["synonym family without a sentence-similarity constraint (a deviation)"]


def test_a_replacement_takes_the_case_of_one_and_two_letter_words():
    from robustir.perturb.synonyms import restore_case

    assert restore_case("an", "A") == "An"  # one capital letter: capitalised, not upper case
    assert restore_case("nation", "US") == "NATION"
    assert restore_case("nation", "us") == "nation"


def test_an_embedding_neighbour_at_exactly_the_minimum_cosine_is_kept():
    from robustir.perturb.synonyms import EmbeddingNeighbourSwap
    from robustir.perturb.words import query_words

    class Neighbours:
        def neighbours(self, word, count):
            return [("rapid", 0.75), ("quick", 0.5), ("slow", 0.4999)]

    swap = EmbeddingNeighbourSwap(Neighbours(), max_candidates=3, min_cos_sim=0.5)
    assert swap.edits(query_words("Fast cars"), 0, random.Random(0)) == [{0: "Rapid"}, {0: "Quick"}]


def test_the_family_sentence_encoder_is_the_one_given_else_minilm_on_the_device():
    from robustir.perturb.variation import _minilm

    given = object()
    assert _minilm(given, "cpu") is given
    encoder = _minilm(None, "cpu:0")
    assert (encoder.spec.key, str(encoder.device), encoder.progress) == ("minilm", "cpu:0", False)


def test_neighbours_never_include_the_word_and_keep_vocabulary_order_in_ties():
    """A vocabulary no larger than the count asked for: every other word, best first; twenty
    words tied at the same cosine come in vocabulary order, whatever numpy's sort algorithm."""
    from robustir.perturb.synonyms import WordEmbedding

    tied = tuple(f"w{i:02d}" for i in range(20))
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]] + [[0.6, 0.8]] * 20, dtype=np.float32)
    embedding = WordEmbedding(("fast", "slow", *tied), vectors, "toy")
    neighbours = embedding.neighbours("fast", 50)
    assert [word for word, _ in neighbours] == [*tied, "slow"]
    assert [cosine for _, cosine in neighbours] == pytest.approx([0.6] * 20 + [0.0])
    # (which of the tied words make a cut through a tie is argpartition's choice)
    assert [cosine for _, cosine in embedding.neighbours("slow", 3)] == pytest.approx([0.8] * 3)


# -- fifth batch: perturb/variation.py's generation and provenance, synonyms' constraints ---------


class _NumberedGenerator:
    """Appends a number drawn from the query's RNG; empties the query "drop"."""

    name = "numbered"
    fell_back = False

    def prepare(self, texts):
        pass

    def rehearsal(self):
        import contextlib

        return contextlib.nullcontext(False)

    def __call__(self, text, rng):
        number = rng.randrange(10**6)
        return "" if text == "drop" else f"{text} {number}"


def test_generated_variations_record_their_provenance_and_log_what_changed(caplog):
    from robustir import __version__
    from robustir.perturb.family import Family
    from robustir.perturb.variation import GENERATORS_REVISION, generate_variations

    family = Family("toy", "Toy Family", (_NumberedGenerator(),), {"p": 1})
    with caplog.at_level(logging.INFO, logger="robustir.perturb.variation"):
        result = generate_variations({"q1": "aspirin lowers risk", "q2": "drop"}, family, 5,
                                     dataset="data-x")
    assert result.provenance == {
        "dataset": "data-x", "split": "test", "family": "toy", "family_display_name": "Toy Family",
        "seed": 5, "rng_scope": "stream", "generators": ["numbered"],
        "generators_revision": GENERATORS_REVISION, "parameters": {"p": 1},
        "robustir_version": __version__, "n_queries": 2, "n_changed": 2, "unchanged_fraction": 0.0,
        "n_empty": 1, "chosen_per_generator": {"numbered": 2},
        "fallbacks_per_generator": {"numbered": 0},
    }
    assert caplog.messages == ["data-x/toy: 1 variants are empty (encoded as [PAD])",
                               "data-x/toy seed 5: 2 of 2 queries changed"]


def test_a_query_scoped_variant_comes_from_the_seed_the_dataset_and_the_query_id():
    from robustir.perturb import query_rng
    from robustir.perturb.family import Family
    from robustir.perturb.variation import generate_variations

    family = Family("toy", "Toy Family", (_NumberedGenerator(),), {})
    queries = {"q1": "aspirin lowers risk", "q2": "statins lower cholesterol"}
    result = generate_variations(queries, family, 5, dataset="data-x", rng_scope="query")
    for query_id, text in queries.items():
        expected = f"{text} {query_rng(5, 'data-x', query_id).randrange(10**6)}"
        assert result.variations[query_id].text == expected


def test_bad_queries_are_refused_with_their_id_and_what_to_do():
    from robustir.perturb.variation import generate_variations

    with pytest.raises(TypeError) as not_text:
        generate_variations({"q1": 7}, "ordering", 5, dataset="d")
    assert str(not_text.value) == "query 'q1': text must be a string, got int"
    with pytest.raises(ValueError) as empty:
        generate_variations({"q1": "  "}, "ordering", 5, dataset="d")
    assert str(empty.value) == ("query 'q1' is empty; remove it from the query set or give it text "
                                "before generating variations")


def test_build_family_passes_the_encoder_on_and_records_the_stopword_list():
    from robustir.perturb import build_family, register_family, variation

    register_family("echo", "Echo")(lambda *, encoder=None, device="cpu": ([], {"encoder": encoder}))
    try:
        given = object()
        family = build_family("echo", encoder=given)
        assert family.parameters == {"encoder": given, "stopwords": variation.STOPWORDS_SOURCE}
    finally:
        variation.FAMILIES.pop("echo")
        variation.FAMILY_NAMES.pop("echo")
        variation._ALIASES.pop("echo")


def test_sentence_similarity_checks_every_long_candidate_and_keeps_one_at_the_threshold():
    from robustir.perturb.synonyms import Candidate, SentenceSimilarity, WordNetSwap

    def orthogonal(texts):  # the original windows along x, the candidates' along y: cosine 0
        half = len(texts) // 2
        return np.array([[1.0, 0.0]] * half + [[0.0, 1.0]] * half)

    candidates = [Candidate("rapid", (0,)), Candidate("rapid cars", (0,))]
    assert SentenceSimilarity(orthogonal, threshold=0.5, window_size=2)("fast cars", candidates) == [True, False]
    assert SentenceSimilarity(orthogonal, threshold=0.0, window_size=2)("fast cars", candidates) == [True, True]
    with WordNetSwap(None).rehearsal() as rehearses:
        assert rehearses is False


def test_an_unknown_pooling_is_named_with_the_known_ones():
    import torch

    from robustir.encode import _POOLINGS, pool

    with pytest.raises(ValueError) as unknown:
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.long), "max")
    assert str(unknown.value) == f"unknown pooling 'max'; expected one of {_POOLINGS}"


def test_the_separator_goes_between_a_prompt_and_the_text_and_only_then():
    from robustir.encode import Encoder

    encoder = SimpleNamespace(spec=SimpleNamespace(separator="\n"))
    assert Encoder._with_prompt(encoder, ["aspirin", ""], "Instruct: find") == [
        "Instruct: find\naspirin", "Instruct: find\n[PAD]"]
    assert Encoder._with_prompt(encoder, ["aspirin"], "") == ["aspirin"]
