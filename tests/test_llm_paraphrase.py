"""The offline paraphraser: batched sampling with a shared-prefix cache, seeding, the filter and
its fall-back count, on a tiny random Llama (fast) and on SmolLM2-135M-Instruct (slow)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from robustir.perturb import build_family, generate_variations
from robustir.perturb.family import Family
from robustir.perturb.llm_paraphrase import (
    ParaphraseSettings,
    clean_candidate,
    copy_key,
    llm_paraphraser,
)

QUERIES = {
    "q1": "Vitamin D deficiency raises the risk of fractures.",
    "q2": "aspirin and stroke",
    "q3": "A much longer query about the effect of statins on heart failure in older adults with diabetes.",
}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template, saved as a folder; its
    replies are random tokens that end after a few."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from robustir.encode import base_weights_location
    from robustir.models import get_model_spec

    tokenizer = AutoTokenizer.from_pretrained(base_weights_location(get_model_spec("smollm2")))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    stops = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])] + [tokenizer.eos_token_id]
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        # large output vectors for line breaks and the end of turn: replies end after a few tokens
        model.lm_head.weight[stops] = 0.3 * torch.randn(len(stops), config.hidden_size)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _minilm():
    from robustir.encode import Encoder
    from robustir.models import get_model_spec

    encoder = Encoder(get_model_spec("minilm"), progress=False)
    return lambda texts: encoder.encode_texts(list(texts))


#: Accepts anything non-empty that is not a copy: a random model's text passes.
PERMISSIVE = ParaphraseSettings(similarity_threshold=-1.0, min_length_ratio=0.0, max_length_ratio=1.5,
                                dtype="float32", batch_size=2)


def _family(generator) -> Family:
    return Family("paraphrase", "Paraphrasing", (generator,), generator.parameters())


def test_copy_key_and_cleaning_by_hand():
    assert copy_key("Vitamin D, lowers  fracture-risk!") == copy_key("vitamin d lowers fracture risk")
    assert copy_key("vitamin D lowers risk") != copy_key("vitamin D raises risk")
    assert clean_candidate('  "Aspirin prevents strokes."  \nSecond line') == "Aspirin prevents strokes."
    assert clean_candidate("“quoted”") == "quoted" and clean_candidate("\n") == ""


def _reference_token(probs: list[float], top_p: float, uniform: float) -> int:
    """The nucleus draw written out: tokens by probability (ties by id), kept until their mass
    reaches top_p, the first whose cumulative mass exceeds uniform × the kept mass."""
    ranked = sorted(range(len(probs)), key=lambda t: (-probs[t], t))
    kept, mass = [], 0.0
    for token in ranked:
        if mass >= top_p:
            break
        kept.append(token)
        mass += probs[token]
    target, running = uniform * mass, 0.0
    for token in kept:
        running += probs[token]
        if running > target:
            return token
    return kept[-1]


def test_the_nucleus_draw_ranks_ties_by_token_id_and_widens_its_search():
    from robustir.perturb.llm_paraphrase import ChatSampler

    sampler = ChatSampler.__new__(ChatSampler)
    sampler.temperature, sampler.top_p = 1.0, 0.9
    vocabulary = 3000
    # row 0: four tied likely tokens (ids 7, 3, 900, 40) hold 0.92 of the mass; row 1: the mass
    # is spread over every token, so the nucleus is wider than every partial search
    peaked = torch.full((vocabulary,), -30.0)
    peaked[[7, 3, 900, 40]] = 5.0
    spread = torch.linspace(0.0, 0.5, vocabulary)
    logits = torch.stack([peaked, spread])
    probs = torch.softmax(logits, -1)
    for seed in range(40):
        generators = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(1000 + seed)]
        uniforms = [float(torch.rand(1, generator=torch.Generator().manual_seed(s))) for s in (seed, 1000 + seed)]
        drawn = sampler._draw(logits, generators)
        assert drawn == [_reference_token(probs[row].tolist(), 0.9, uniforms[row]) for row in (0, 1)]
        assert drawn[0] in (3, 7, 40, 900)
    # the uniform picks among tied tokens in ascending id order: below 1/4 of the kept mass, id 3
    assert _reference_token(probs[0].tolist(), 0.9, 0.1) == 3


def test_filter_rejects_each_failure_by_name(tiny_llama):
    paraphraser = llm_paraphraser(_minilm(), location=tiny_llama,
                                  settings=ParaphraseSettings(dtype="float32"))
    query = "aspirin lowers the risk of stroke"  # 7 tokens: at least 4, at most 10 generated
    assert paraphraser.sampler.token_count(query) == 7
    assert paraphraser.rejection(query, "", 0, True, 0.0) == "empty"
    assert paraphraser.rejection(query, "Aspirin lowers the risk of stroke!", 8, True, 1.0) == "copy"
    assert paraphraser.rejection(query, "stroke risk is lower with aspirin", 11, True, 0.9) == "too long"
    assert paraphraser.rejection(query, "stroke risk is lower with aspirin", 10, False, 0.9) == "too long"
    assert paraphraser.rejection(query, "aspirin", 3, True, 0.9) == "too short"
    assert paraphraser.rejection(query, "stroke risk is lower with aspirin", 7, True, 0.79) == "dissimilar"
    assert paraphraser.rejection(query, "stroke risk is lower with aspirin", 10, True, 0.8) is None
    assert paraphraser.rejection(query, "stroke risk is lower with aspirin", 4, True, 0.8) is None


def test_a_row_in_a_batch_sees_the_same_next_token_distribution_as_alone(tiny_llama):
    paraphraser = llm_paraphraser(_minilm(), location=tiny_llama, settings=PERMISSIVE)
    sampler, tokenizer, model = paraphraser.sampler, paraphraser.sampler.tokenizer, paraphraser.sampler.model
    texts = list(QUERIES.values())
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] + sampler.suffix_ids for t in texts]
    width, prefix = max(map(len, rows)), len(sampler.prefix_ids)
    row_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    cache = copy.deepcopy(sampler._prefix())
    cache.batch_repeat_interleave(len(rows))
    with torch.inference_mode():
        batched = model(
            input_ids=torch.tensor([[0] * (width - len(r)) + r for r in rows]),
            attention_mask=torch.cat([torch.ones(len(rows), prefix, dtype=torch.long), row_mask], 1),
            position_ids=(prefix + row_mask.cumsum(-1) - 1).clamp(min=prefix),
            cache=cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1]
        for i, row in enumerate(rows):
            alone = model(input_ids=torch.tensor([sampler.prefix_ids + row])).logits[0, -1]
            np.testing.assert_allclose(batched[i].numpy(), alone.numpy(), atol=1e-5)


def test_sampling_shapes_caps_and_seeded_determinism(tiny_llama):
    sampler = llm_paraphraser(_minilm(), location=tiny_llama, settings=PERMISSIVE).sampler
    texts = list(QUERIES.values())

    def sample(seeds, caps=(3, 5, 7)):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sampler.sample(texts, generators, list(caps))

    first = sample([1, 2, 3])
    assert len(first) == 3
    for (text, tokens, ended), cap in zip(first, (3, 5, 7)):
        assert isinstance(text, str) and 1 <= tokens + ended <= cap and (ended or tokens == cap)
    assert sample([1, 2, 3]) == first  # same seeds, same draws
    assert sample([1, 2, 4])[:2] == first[:2]  # a row's draws depend on its own seed only
    assert sample([1, 2, 4])[2] != first[2]
    alone = sampler.sample(texts[2:], [torch.Generator().manual_seed(3)], [7])
    assert alone == first[2:]  # nor on the rest of the batch


def test_variants_are_seeded_by_the_family_rng_and_provenance_counts_fallbacks(tiny_llama):
    generator = llm_paraphraser(_minilm(), location=tiny_llama, settings=PERMISSIVE)
    made = generate_variations(QUERIES, _family(generator), 5, dataset="toy")
    again = generate_variations(
        QUERIES, _family(llm_paraphraser(_minilm(), location=tiny_llama, settings=PERMISSIVE)), 5,
        dataset="toy")
    assert made.variations == again.variations  # a fresh generator, the same seed: the same text
    other = generate_variations(QUERIES, _family(generator), 27, dataset="toy")
    assert other.queries != made.queries
    for result in (made, other):
        fallbacks = result.provenance["fallbacks_per_generator"]["llm_paraphrase"]
        assert fallbacks == sum(not v.changed for v in result.variations.values())
        assert all(v.generator == "llm_paraphrase" for v in result.variations.values())
        assert result.provenance["parameters"]["similarity_threshold"] == -1.0
    # each call takes exactly one 63-bit draw of the family's random.Random, nothing global
    rng, expected = random.Random(11), random.Random(11)
    torch.manual_seed(0)
    first = generator(QUERIES["q2"], rng)
    torch.manual_seed(1)
    expected.getrandbits(63)
    assert rng.getstate() == expected.getstate()
    assert generator(QUERIES["q2"], random.Random(11)) == first


def test_every_rejected_query_falls_back_to_the_original_and_is_counted(tiny_llama):
    # a random model's text is never within MiniLM cosine 0.8 of the query
    settings = ParaphraseSettings(dtype="float32", max_tries=2)
    generator = llm_paraphraser(_minilm(), location=tiny_llama, settings=settings)
    result = generate_variations(QUERIES, _family(generator), 1999, dataset="toy")
    assert result.provenance["fallbacks_per_generator"] == {"llm_paraphrase": len(QUERIES)}
    assert result.provenance["n_changed"] == 0
    assert all(v.text == v.original for v in result.variations.values())
    outcomes = list(generator._attempts.values())
    assert len(outcomes) == len(QUERIES)
    assert all(not o.accepted and o.tries == 2 and len(o.rejections) == 2 for o in outcomes)
    assert {r for o in outcomes for r in o.rejections} <= {"too long", "dissimilar", "too short", "empty"}


@pytest.mark.parametrize("field, value", [("temperature", 0.0), ("top_p", 1.5), ("max_tries", 0),
                                          ("min_length_ratio", 2.0), ("dtype", "float16")])
def test_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=f"ParaphraseSettings.*{field}"):
        ParaphraseSettings(**{field: value})


def test_offline_the_family_is_the_substitute_and_says_why():
    import os

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("checks the offline behaviour (HF_HUB_OFFLINE=1)")
    family = build_family("paraphrase")
    assert [g.name for g in family.generators] == ["llm_paraphrase"]
    parameters = family.parameters
    assert parameters["generators_used"].startswith("substitute")
    assert "facebook/m2m100_418M" in parameters["study_generators_unavailable"]
    assert "SmolLM2-135M-Instruct" in parameters["generator_model"]
    assert parameters["similarity_threshold"] == 0.8 and parameters["max_tries"] == 4
    assert parameters["sentence_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.slow
def test_smollm2_paraphrases_of_scifact_queries_pass_the_filter(shared_data):
    from robustir.data import load_dataset

    from robustir.perturb.llm_paraphrase import SIMILARITY_THRESHOLD

    queries = dict(list(load_dataset(shared_data / "scifact", "test").queries.items())[:10])
    family = build_family("paraphrase")
    result = generate_variations(queries, family, 1999, dataset="scifact")
    generator = family.generators[0]
    changed = [v for v in result.variations.values() if v.changed]
    assert len(changed) >= 5  # most short claims get an accepted paraphrase
    assert result.provenance["fallbacks_per_generator"]["llm_paraphrase"] == len(queries) - len(changed)
    encode = _minilm()
    cosines = np.sum(encode([v.original for v in changed]) * encode([v.text for v in changed]), axis=1)
    assert cosines.min() >= SIMILARITY_THRESHOLD - 1e-4
    for variation in changed:
        assert copy_key(variation.text) != copy_key(variation.original)
        low, high = generator._length_bounds(variation.original)
        assert low <= generator.sampler.token_count(variation.text) <= high + 2
