"""Tests for robustir.geometry: hand-computed cases, invariants and the PyPI IsoScore package."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robustir import geometry


# ---------------------------------------------------------------------------- IsoScore


def test_isoscore_near_one_for_isotropic_gaussian():
    points = np.random.default_rng(0).standard_normal((20_000, 16))
    assert geometry.isoscore(points) == pytest.approx(1.0, abs=0.01)


def test_isoscore_zero_for_points_on_one_line():
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(32)
    points = rng.standard_normal((500, 1)) * direction + 3.0  # a line not through the origin
    assert geometry.isoscore(points) == pytest.approx(0.0, abs=1e-9)


def test_isoscore_equals_k_minus_one_over_d_minus_one_for_k_equal_directions():
    # The 2³ sign patterns on k = 3 of d = 5 axes: uncorrelated, equal variances, so
    # Σ̂ = √(d/k) on k axes and ι = (k − 1)/(d − 1) = 0.5 exactly.
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    points = np.zeros((32, 5))
    points[:, :3] = np.tile(patterns, (4, 1))
    assert geometry.isoscore(points) == pytest.approx(0.5, abs=1e-12)


def test_isoscore_matches_pypi_isoscore_package():
    pypi = pytest.importorskip("IsoScore.IsoScore")
    rng = np.random.default_rng(3)
    # An anisotropic cloud: Gaussian scaled per axis, then rotated.
    scales = np.linspace(0.1, 3.0, 24)
    rotation, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    points = (rng.standard_normal((3_000, 24)) * scales) @ rotation
    ours = geometry.isoscore(points)
    theirs = float(pypi.IsoScore(points.astype(np.float32)))
    assert 0.2 < ours < 0.9
    assert ours == pytest.approx(theirs, abs=1e-5)


def test_principal_component_variances_equal_pca_coordinate_variances():
    rng = np.random.default_rng(4)
    points = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    centred = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    pca_variances = np.var(centred @ components.T, axis=0, ddof=1)
    got = geometry.principal_component_variances(points.astype(np.float32), chunk_size=7)
    np.testing.assert_allclose(got, pca_variances, rtol=1e-5)


def test_isoscore_rejects_fewer_samples_than_dimensions():
    with pytest.raises(ValueError, match="more samples than dimensions.*n_samples=10, dimension=16"):
        geometry.isoscore(np.ones((10, 16)))


def test_isoscore_rejects_identical_points():
    with pytest.raises(ValueError, match="identical"):
        geometry.isoscore(np.ones((50, 4)))


def test_nan_row_is_named():
    points = np.random.default_rng(5).standard_normal((30, 4))
    points[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7 holds NaN"):
        geometry.isoscore(points)


def test_one_dimensional_input_is_rejected_with_expected_shape():
    with pytest.raises(ValueError, match=r"shape \(n_samples, dimension\)"):
        geometry.exact_average_cosine(np.ones(8))


# ---------------------------------------------------------------------------- average cosine

# Three unit vectors in the plane: e1, e2 and their bisector. Pair cosines 0, 1/√2, 1/√2.
HAND_POINTS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # third row normalised inside


def test_exact_average_cosine_hand_case():
    assert geometry.exact_average_cosine(HAND_POINTS) == pytest.approx(math.sqrt(2) / 3, abs=1e-12)


def test_exact_average_cosine_equals_brute_force_over_distinct_pairs():
    points = np.random.default_rng(6).standard_normal((40, 5)) + 0.5
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    cosines = unit @ unit.T
    brute = (cosines.sum() - np.trace(cosines)) / (40 * 39)
    assert geometry.exact_average_cosine(points) == pytest.approx(brute, abs=1e-12)


def test_random_pair_average_cosine_estimates_squared_mean_direction():
    # With replacement (self-pairs allowed) the expectation is ‖μ̄‖² = (3 + 2√2)/9.
    expected = (3 + 2 * math.sqrt(2)) / 9
    estimate = geometry.average_cosine(HAND_POINTS, n_pairs=200_000, seed=1999)
    # per-pair std is below 0.5, so 5 standard errors is under 0.006
    assert estimate == pytest.approx(expected, abs=0.006)
    assert geometry.average_cosine(HAND_POINTS, n_pairs=1000, seed=5) == geometry.average_cosine(
        HAND_POINTS, n_pairs=1000, seed=5
    )


def test_average_cosine_is_scale_invariant_per_row():
    rng = np.random.default_rng(7)
    points = rng.standard_normal((100, 8))
    scaled = points * rng.uniform(0.1, 10, size=(100, 1))
    assert geometry.average_cosine(points, n_pairs=500, seed=27) == pytest.approx(
        geometry.average_cosine(scaled, n_pairs=500, seed=27), abs=1e-12
    )


def test_zero_row_is_named():
    points = np.ones((5, 3))
    points[3] = 0
    with pytest.raises(ValueError, match="row 3 has zero norm"):
        geometry.exact_average_cosine(points)


# ---------------------------------------------------------------------------- alignment, uniformity


def test_alignment_of_identical_pairs_is_zero():
    points = np.random.default_rng(8).standard_normal((20, 6))
    assert geometry.alignment(points, 2.5 * points) == pytest.approx(0.0, abs=1e-12)


def test_pair_distances_per_pair_and_alignment_is_their_mean():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    y = np.array([[-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(geometry.pair_distances(x, y), [4.0, 2.0, 0.0], atol=1e-12)
    assert geometry.alignment(x, y) == pytest.approx(2.0)


def test_alignment_of_antipodal_and_orthogonal_pairs():
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([[-1.0, 0.0], [0.0, 1.0]])
    # squared distances 4 and 2
    assert geometry.alignment(x, y) == pytest.approx(3.0)
    assert geometry.alignment(x, y, alpha=1) == pytest.approx((2 + math.sqrt(2)) / 2)


def test_alignment_rejects_unpaired_shapes():
    with pytest.raises(ValueError, match="pair row by row"):
        geometry.alignment(np.ones((3, 2)), np.ones((4, 2)))


def test_uniformity_of_cross_polytope_hand_case():
    d = 3
    points = np.vstack([np.eye(d), -np.eye(d)])
    # d antipodal pairs (‖x−y‖² = 4) and 2d(d−1) orthogonal pairs (‖x−y‖² = 2)
    expected = math.log((d * math.exp(-8) + 2 * d * (d - 1) * math.exp(-4)) / (d * (2 * d - 1)))
    assert geometry.uniformity(points) == pytest.approx(expected, abs=1e-12)


def test_uniformity_matches_pdist_definition_across_chunk_sizes():
    points = np.random.default_rng(9).standard_normal((120, 5))
    unit = torch.nn.functional.normalize(torch.from_numpy(points), dim=1)
    reference = float(torch.pdist(unit).pow(2).mul(-2).exp().mean().log())
    for chunk_size in (1, 7, 64, 1000):
        assert geometry.uniformity(points, chunk_size=chunk_size) == pytest.approx(reference, abs=1e-10)


def test_uniformity_orders_spread_below_clustered():
    rng = np.random.default_rng(10)
    spread = rng.standard_normal((500, 8))
    clustered = np.ones(8) + 0.05 * rng.standard_normal((500, 8))
    assert geometry.uniformity(spread) < geometry.uniformity(clustered) - 1.0
    assert geometry.uniformity(clustered) > -0.1  # nearly one point: close to log 1 = 0


def test_positive_pairs_follow_qrels_grades():
    queries = SimpleNamespace(ids=["q1", "q2"], vectors=np.array([[1.0, 0.0], [0.0, 1.0]]))
    corpus = SimpleNamespace(ids=["a", "b", "c"], vectors=np.array([[1, 1], [2, 2], [3, 3.0]]))
    qrels = {"q1": {"b": 1, "c": 0}, "q2": {"a": 2}, "q3": {"c": 1}}
    anchors, positives, pair_query_ids = geometry.positive_pairs(queries, corpus, qrels)
    assert pair_query_ids == ["q1", "q2"]
    np.testing.assert_array_equal(anchors, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(positives, [[2, 2], [1, 1]])
    with pytest.raises(KeyError, match=r"\('q1', 'z'\)"):
        geometry.positive_pairs(queries, corpus, {"q1": {"z": 1}})


# ---------------------------------------------------------------------------- sampling


def test_length_stratified_sample_quota_per_shard():
    lengths = np.arange(25)  # 25 documents, longest is index 24
    sample = geometry.length_stratified_sample(lengths, 8, shard_size=10, seed=1999)
    # shards (longest first): 24..15, 14..5, 4..0; 8 = 3+3+2
    shard_of = {doc: (24 - doc) // 10 for doc in range(25)}
    assert [shard_of[doc] for doc in sample] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert len(set(sample.tolist())) == 8


def test_length_stratified_sample_caps_at_shard_and_takes_small_corpus_whole():
    lengths = [5, 5, 1, 9, 3]
    whole = geometry.length_stratified_sample(lengths, 100, shard_size=50, seed=5)
    assert sorted(whole.tolist()) == [0, 1, 2, 3, 4]
    capped = geometry.length_stratified_sample(np.arange(12), 9, shard_size=5, seed=5)
    # shards of 5, 5, 2: quotas 3, 3, 3 capped to 3, 3, 2
    assert capped.size == 8


def test_length_stratified_sample_is_seeded_and_ties_keep_corpus_order():
    lengths = [3, 7, 3, 7]  # stable longest-first order 1, 3 | 0, 2
    first = geometry.length_stratified_sample(lengths, 2, shard_size=2, seed=2016)
    assert first[0] in (1, 3) and first[1] in (0, 2)
    again = geometry.length_stratified_sample(lengths, 2, shard_size=2, seed=2016)
    np.testing.assert_array_equal(first, again)
    draws = {tuple(geometry.length_stratified_sample(np.arange(100), 10, seed=s)) for s in range(5)}
    assert len(draws) == 5


def test_length_stratified_sample_rejects_bad_sample_size():
    with pytest.raises(ValueError, match="sample_size must be a positive integer; got 0"):
        geometry.length_stratified_sample([1, 2], 0, seed=1)


def test_sample_corpus_embeddings_looks_rows_up_by_id():
    corpus = {"a": {"text": "xx"}, "b": {"text": "xxxx"}, "c": {"text": "x"}}
    stored = SimpleNamespace(ids=["c", "a", "b"], vectors=np.array([[3.0], [1.0], [2.0]]))
    ids, vectors = geometry.sample_corpus_embeddings(corpus, stored, 3, shard_size=1, seed=1)
    assert ids == ["b", "a", "c"]  # one per length shard, longest first
    np.testing.assert_array_equal(vectors, [[2.0], [1.0], [3.0]])
    with pytest.raises(KeyError, match="have no embedding"):
        geometry.sample_corpus_embeddings(
            corpus, SimpleNamespace(ids=["a"], vectors=np.ones((1, 1))), 3, seed=1
        )


def test_corpus_sort_lengths_counts_title_plus_text():
    corpus = {"a": {"title": "ab", "text": "cde"}, "b": {"text": "x"}, "c": {"title": None, "text": ""}}
    np.testing.assert_array_equal(geometry.corpus_sort_lengths(corpus), [5, 1, 0])


# ---------------------------------------------------------------------------- spectral norm


class _TinyEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.nn.Linear(2, 2, bias=False)
        self.block.weight.data = torch.tensor([[3.0, 0.0], [0.0, -1.0]])  # σ_max = 3
        self.proj = torch.nn.Linear(3, 2, bias=True)
        # rank one u vᵀ: σ_max = ‖u‖‖v‖ = √5 · √2
        self.proj.weight.data = torch.outer(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0]))
        self.pooler = torch.nn.Sequential(torch.nn.Linear(2, 2))
        self.lm_head = torch.nn.Linear(2, 7)


def test_spectral_norms_of_hand_built_module():
    norms = geometry.linear_spectral_norms(_TinyEncoder())
    assert list(norms) == ["block", "proj"]  # pooler.0 and lm_head are excluded
    assert norms["block"] == pytest.approx(3.0)
    assert norms["proj"] == pytest.approx(math.sqrt(10), rel=1e-6)
    summary = geometry.spectral_norm_summary(norms)
    assert summary.mean == pytest.approx((3 + math.sqrt(10)) / 2, rel=1e-6)
    assert summary.max_layer == "proj" and summary.last == pytest.approx(math.sqrt(10), rel=1e-6)
    assert summary.std == pytest.approx((math.sqrt(10) - 3) / 2, rel=1e-5)
    assert summary.n_layers == 2


def test_spectral_norm_reads_bfloat16_weights():
    model = _TinyEncoder().to(torch.bfloat16)
    assert geometry.linear_spectral_norms(model)["block"] == pytest.approx(3.0)


def test_spectral_norm_summary_of_static_model_is_an_error():
    with pytest.raises(ValueError, match="no torch.nn.Linear layer"):
        geometry.spectral_norm_summary(geometry.linear_spectral_norms(torch.nn.Embedding(5, 3)))


def test_sample_geometry_keys_and_consistency():
    points = np.random.default_rng(11).standard_normal((200, 4)) + 1.0
    values = geometry.sample_geometry(points, seed=2026, n_pairs=50_000)
    assert set(values) == {"isoscore", "average_cosine", "exact_average_cosine", "uniformity"}
    # 50k random pairs from 200 points: the self-pair share (1/200) moves the mean by < 0.01
    assert values["exact_average_cosine"] == pytest.approx(values["average_cosine"], abs=0.02)


def test_sample_geometry_without_enough_points_has_nan_isoscore_only(caplog):
    points = np.random.default_rng(12).standard_normal((6, 8))
    values = geometry.sample_geometry(points, seed=5, n_pairs=100)
    assert math.isnan(values["isoscore"])
    assert "IsoScore skipped: the sample has 6 points in 8 dimensions" in caplog.text
    assert values["exact_average_cosine"] == pytest.approx(geometry.exact_average_cosine(points))
