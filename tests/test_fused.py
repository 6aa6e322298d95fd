"""The fused CPU inference forwards compute what the modules' own forwards compute.

Each fused model is compared with a second load of the same weights that keeps its own
forwards: all-MiniLM-L6-v2 (BERT), SmolLM2-135M (Llama, the shipped GGUF dequantised) and a
tiny random Llama with grouped key/value heads and biases.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustir.encode import base_weights_location, pool
from robustir.fused import fuse_for_cpu_inference, widest_output
from robustir.models import get_model_spec

TEXTS = [
    "Vitamin D deficiency raises the risk of fractures.",
    "Aspirin, taken daily for years by otherwise healthy adults, lowers the risk of a first "
    "stroke but raises the risk of bleeding.",
    "sleep",
]
#: float32: products accumulated in another order, so token states agree to this relative error.
FP32_RTOL = 1e-5


def _relative_error(found: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest relative L2 error over the real tokens of ``(batch, tokens, dim)`` states."""
    real = mask.bool()
    return float(((found - expected)[real].norm(dim=-1) / expected[real].norm(dim=-1)).max())


def _pair(key: str, dtype: torch.dtype):
    """Tokenised ``TEXTS`` and two loads of ``key``'s model: its own forwards, fused forwards."""
    from transformers import AutoModel, AutoTokenizer

    location = base_weights_location(get_model_spec(key))
    tokenizer = AutoTokenizer.from_pretrained(location)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    own = AutoModel.from_pretrained(location, dtype=dtype).eval()
    fused = AutoModel.from_pretrained(location, dtype=dtype).eval()
    return batch, own, fused, fuse_for_cpu_inference(fused)


def _tiny_llama():
    """A 2-layer random Llama (4 query heads, 2 key/value heads, attention biases), its
    parameters drawn from a seeded generator."""
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
    model = LlamaModel(config).eval()
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            centre = 1.0 if "norm" in name else 0.0
            parameter.copy_(centre + 0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def _tiny_llama_pair():
    own = _tiny_llama()
    fused = _tiny_llama()
    counts = fuse_for_cpu_inference(fused)
    ids = torch.tensor([[5, 17, 42, 8, 99, 3], [7, 7, 1, 64, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return own, fused, counts, {"input_ids": ids, "attention_mask": mask}


def test_every_layer_of_minilm_and_smollm2_gets_its_fused_forwards():
    *_, minilm = _pair("minilm", torch.float32)
    # 6 BERT layers: one stacked q/k/v, one GELU intermediate, two residual outputs each;
    # plain nn.Linear: the three denses per layer plus the pooler's
    assert minilm == {"intermediate": 6, "output": 12, "gated_mlp": 0, "linear": 19,
                      "shared_projection": 6}
    *_, smollm2 = _pair("smollm2", torch.float32)
    # 30 Llama layers: one stacked q/k/v and one gated MLP each; o_proj and the MLP's three
    assert smollm2 == {"intermediate": 0, "output": 0, "gated_mlp": 30, "linear": 120,
                       "shared_projection": 30}


@pytest.mark.parametrize("key", ["minilm", "smollm2"])
def test_fused_float32_states_equal_the_models_own(key):
    batch, own, fused, _ = _pair(key, torch.float32)
    with torch.inference_mode():
        expected = own(**batch).last_hidden_state
        found = fused(**batch).last_hidden_state
    assert _relative_error(found, expected, batch["attention_mask"]) < FP32_RTOL


@pytest.mark.parametrize("key", ["minilm", "smollm2"])
def test_fused_bfloat16_is_as_close_to_float32_as_the_models_own_bfloat16(key):
    # bfloat16 keeps 8 significant bits: both bfloat16 forwards differ from float32 by about
    # 2-5 % per token state; the fused one may not be worse by more than a fifth, and the
    # mean-pooled vectors stay within cosine 0.999 of float32's
    batch, own, fused, _ = _pair(key, torch.bfloat16)
    _, reference, _, _ = _pair(key, torch.float32)
    mask = batch["attention_mask"]
    with torch.inference_mode():
        exact = reference(**batch).last_hidden_state
        own_error = _relative_error(own(**batch).last_hidden_state.float(), exact, mask)
        states = fused(**batch).last_hidden_state
    assert _relative_error(states.float(), exact, mask) <= 1.2 * own_error
    cosine = F.cosine_similarity(pool(states, mask, "mean"), pool(exact, mask, "mean"))
    assert float(cosine.min()) > 0.999


def test_fused_tiny_llama_with_grouped_heads_and_biases_equals_its_own():
    own, fused, counts, batch = _tiny_llama_pair()
    assert counts["shared_projection"] == 2 and counts["gated_mlp"] == 2
    with torch.inference_mode():
        expected = own(**batch).last_hidden_state
        found = fused(**batch).last_hidden_state
    assert _relative_error(found, expected, batch["attention_mask"]) < FP32_RTOL


def test_gradients_flow_through_the_models_own_forward():
    # HotFlip differentiates the similarity with respect to the input embeddings
    own, fused, _, batch = _tiny_llama_pair()
    gradients = []
    for model in (own, fused):
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
        model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state[:, -1].sum().backward()
        gradients.append(embeds.grad)
    assert gradients[1] is not None and float(gradients[1].abs().sum()) > 0
    torch.testing.assert_close(gradients[1], gradients[0], rtol=0, atol=0)  # the same code ran


def test_changed_weights_are_used_by_the_stacked_projection():
    own, fused, _, batch = _tiny_llama_pair()
    for model in (own, fused):
        with torch.no_grad():
            model.layers[0].self_attn.k_proj.weight.mul_(-2.0)  # in place, after fusing
    with torch.inference_mode():
        expected, found = own(**batch).last_hidden_state, fused(**batch).last_hidden_state
    assert _relative_error(found, expected, batch["attention_mask"]) < FP32_RTOL
    own, fused = own.to(torch.bfloat16), fused.to(torch.bfloat16)  # cast after fusing
    with torch.inference_mode():
        expected, found = own(**batch).last_hidden_state, fused(**batch).last_hidden_state
    assert _relative_error(found.float(), expected.float(), batch["attention_mask"]) < 0.05


def test_each_stacked_projection_answers_for_its_own_input_in_any_call_order():
    generator = torch.Generator().manual_seed(3)
    attention = nn.Module()
    for name in ("query", "key", "value"):
        setattr(attention, name, nn.Linear(8, 8))
    attention.eval()
    expected = {name: (getattr(attention, name).weight.detach().clone(),
                       getattr(attention, name).bias.detach().clone()) for name in ("query", "key", "value")}
    fuse_for_cpu_inference(attention)
    first, second = torch.randn(2, 3, 8, generator=generator), torch.randn(2, 3, 8, generator=generator)
    with torch.inference_mode():
        calls = [("value", first), ("query", second), ("key", first), ("value", first),
                 ("query", first), ("key", second), ("value", second)]
        for name, x in calls:
            torch.testing.assert_close(getattr(attention, name)(x), F.linear(x, *expected[name]))


def test_the_widest_output_is_the_widest_layer_or_the_stacked_projections():
    _, minilm, _, _ = _pair("minilm", torch.float32)
    assert widest_output(minilm) == 1536  # the intermediate layer; q, k, v stacked: 3 x 384
    assert widest_output(_tiny_llama()) == 160  # the MLP; q, k, v stacked: 64 + 32 + 32
    attention = nn.Module()
    attention.query, attention.key, attention.value = (nn.Linear(8, 8) for _ in range(3))
    attention.out = nn.Linear(8, 20)
    assert widest_output(attention) == 24
    assert widest_output(nn.Module()) == 0
