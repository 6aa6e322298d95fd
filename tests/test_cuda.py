"""The CUDA path of the encoder and the attack, on tiny random models (skipped without a GPU).

CI has no GPU, so these run where one is lent (``python -m pytest tests/test_cuda.py``). The
models are random BERT and Llama encoders of two layers built here, with a word-level
tokenizer, so that nothing needs the model hub or a package-shipped model: what is checked is
the code path (device moves, bfloat16 weights, GPU-sized padding, left padding with last-token
pooling, embedding passages from token ids), not any model's quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from robustir.encode import Encoder
from robustir.models import ModelSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

WORDS = ("aspirin lowers the risk of stroke in older adults vitamin d supplements reduce bone "
         "fractures statins protect the heart after surgery blood pressure rises with salt intake "
         "sleep loss impairs memory in young people exercise improves insulin sensitivity").split()
TEXTS = [" ".join(WORDS[i : i + n]) for i, n in ((0, 3), (5, 11), (12, 2), (20, 17), (33, 6))]


def _tiny_models(root: Path) -> dict[str, ModelSpec]:
    from transformers import BertConfig, BertModel, BertTokenizerFast, LlamaConfig, LlamaModel

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (root / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    tokenizer = BertTokenizerFast(str(root / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    models = {
        "tiny_bert": BertModel(BertConfig(vocab_size=len(vocabulary), hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128,
                                          max_position_embeddings=128)),
        "tiny_llama": LlamaModel(LlamaConfig(vocab_size=len(vocabulary), hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=128, pad_token_id=0)),
    }
    specs = {}
    for key, model in models.items():
        folder = root / key
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        decoder = key == "tiny_llama"
        specs[key] = ModelSpec(key=key, display_name=key, hf_id=str(folder), family="test", max_length=64,
                               pooling="last_token" if decoder else "mean",
                               padding_side="left" if decoder else None)
    return specs


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, ModelSpec]:
    return _tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.mark.parametrize("key", ["tiny_bert", "tiny_llama"])
def test_cuda_float32_matches_the_cpu_and_does_not_depend_on_the_batch(specs, key):
    cpu = Encoder(specs[key], device="cpu", progress=False).encode_texts(TEXTS)
    gpu = Encoder(specs[key], device="cuda", dtype="float32", progress=False)
    batched = gpu.encode_texts(TEXTS)
    alone = np.concatenate([gpu.encode_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(batched, cpu, atol=1e-4)
    # on CUDA batches are padded to a multiple of 8 tokens: the padding must not leak in
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("key", ["tiny_bert", "tiny_llama"])
def test_cuda_defaults_to_the_specs_bfloat16_close_to_float32(specs, key):
    gpu = Encoder(specs[key], device="cuda", progress=False)
    assert gpu.dtype == "bfloat16" and next(gpu.model.parameters()).dtype == torch.bfloat16
    vectors = gpu.encode_texts(TEXTS)
    assert vectors.dtype == np.float32
    reference = Encoder(specs[key], device="cpu", progress=False).encode_texts(TEXTS)
    cosines = np.sum(vectors * reference, axis=1)  # both L2-normalised
    assert cosines.min() > 0.99


def test_passages_from_token_ids_embed_alike_on_cuda_and_cpu(specs):
    from robustir.attack import embed_passages

    cpu = Encoder(specs["tiny_llama"], device="cpu", progress=False)
    ids = [cpu.tokenizer(text, add_special_tokens=False)["input_ids"][:2] for text in TEXTS]
    gpu = Encoder(specs["tiny_llama"], device="cuda", dtype="float32", progress=False)
    np.testing.assert_allclose(embed_passages(gpu, ids, "scifact"), embed_passages(cpu, ids, "scifact"),
                               atol=1e-4)
