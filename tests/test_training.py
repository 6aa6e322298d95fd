"""Training a decoder into a retriever: the recipe on a tiny random decoder (loss falls, the saved
adapter reads back through the Encoder, a seed fixes the weights, a killed run resumes), the
data (never a test query or judgment) and the bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robustir.data import load_dataset
from robustir.encode import Encoder, base_weights_location
from robustir.experiments.training import (
    TrainingConfig,
    TrainingConfigError,
    TrainingDataError,
    load_training_configs,
    train_retriever,
    training_data,
)
from robustir.models import ModelSpec, get_model_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory) -> Path:
    """A 3-layer random Llama with SmolLM2's tokenizer, saved as a model folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("decoder") / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(base_weights_location(get_model_spec("smollm2")))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=128, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    LlamaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(tiny_decoder, **changes) -> TrainingConfig:
    settings = dict(key="tiny_ret", base_model=str(tiny_decoder), steps=12, batch_size=8,
                    learning_rate=3e-3, warmup_steps=2, validate_every=6, checkpoint_every=4,
                    max_length=32, validation_queries=6, temperature=0.05)
    return TrainingConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def trained(tiny_decoder, scifact_tiny, tmp_path_factory):
    output = tmp_path_factory.mktemp("adapters")
    config = _config(tiny_decoder)
    return config, train_retriever(config, output, data_root=scifact_tiny.parent, progress=False)


def test_no_test_query_or_judgment_reaches_the_trainer(scifact_tiny):
    config = TrainingConfig(key="x", validation_queries=5)
    data = training_data(config, data_root=scifact_tiny.parent)
    test = load_dataset(scifact_tiny, "test")
    train = load_dataset(scifact_tiny, "train")
    used_ids = {key.split(":", 1)[1] for key in [*data.queries, *data.validation]
                if key[0] in "qv"}
    assert used_ids and not used_ids & set(test.qrels)
    texts = set(data.queries.values())
    assert not any(text.endswith(query) for text in texts for query in test.queries.values())
    # every supervised positive is a train judgment; title pairs pair a title with its own text
    for query, positive, negatives in data.pairs:
        kind, qid = query.split(":", 1)
        if kind == "q":
            assert positive[2:] in train.qrels[qid] and positive[2:] not in test.qrels.get(qid, {})
        else:
            assert kind == "t" and positive == f"x:{qid}"
        assert positive not in negatives
    assert set(data.validation) == {k for k in data.queries if k.startswith("v:")}
    # the test split is refused by the configuration and by the data step alike
    with pytest.raises(TrainingDataError, match="scifact/test is a held-out split"):
        training_data(config, dataset=test)
    for split in ("test", "dev"):
        with pytest.raises(TrainingConfigError, match="invalid.*train_split"):
            TrainingConfig(key="x", train_split=split)


def test_the_loss_falls_and_every_setting_is_recorded(trained):
    config, result = trained
    history = result.record["history"]
    assert len(history) == config.steps
    first, last = np.mean([h["loss"] for h in history[:3]]), np.mean([h["loss"] for h in history[-3:]])
    assert last < first
    assert result.record["config"] == config.record()
    assert result.record["layers"] == {"total": 3, "frozen": 2, "trained": 1}
    assert [h["step"] for h in history if "validation_ndcg@10" in h] == [6, 12]
    saved = json.loads((result.adapter / "training.json").read_text())
    assert saved["data"] == result.record["data"]
    assert sum(source.get("pairs", 0) for source in saved["data"].values()) > 0


def test_the_saved_adapter_reads_back_through_the_encoder(trained, tiny_decoder, scifact_tiny):
    from robustir.experiments.training import _Stacks

    config, result = trained
    spec = ModelSpec("tiny_ret", "tiny", str(tiny_decoder), "offline decoder-only retriever",
                     pooling="last_token", padding_side="left", prompt_style="instruct",
                     append_eos=True, adapter=str(result.adapter), max_length=config.max_length,
                     dtype="float32")
    texts = ["Vitamin D lowers the risk of fractures.", "A much longer text " * 5, "x"]
    encoded = Encoder(spec, progress=False, dtype="bfloat16").encode_texts(texts)
    # the trainer's own view of the same weights, loaded from the saved adapter
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    stacks = _Stacks(config, __import__("robustir.model_sources", fromlist=["x"]).resolve_model(str(tiny_decoder)))
    set_peft_model_state_dict(stacks.peft, load_file(result.adapter / "adapter_model.safetensors"))
    with torch.inference_mode():
        states = stacks.frozen_states(dict(enumerate(texts)), progress=False)[stacks.frozen]
        trainer = stacks.embed([states[i] for i in range(len(texts))]).numpy()
    cosines = (encoded * trainer).sum(axis=1)
    assert cosines.min() > 0.99


def test_a_seed_fixes_the_weights_and_a_killed_run_resumes_to_them(
        tiny_decoder, scifact_tiny, trained, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    config, result = trained
    reference = load_file(result.adapter / "adapter_model.safetensors")
    # kill the run after its second checkpoint (step 8), then rerun it
    import robustir.experiments.training as training

    saved = training._save_checkpoint
    calls = []

    def killing(*args, **kwargs):
        saved(*args, **kwargs)
        calls.append(args[5])
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_checkpoint", killing)
    with pytest.raises(KeyboardInterrupt):
        train_retriever(config, tmp_path, data_root=scifact_tiny.parent, progress=False)
    assert calls == [4, 8] and (tmp_path / ".tiny_ret.checkpoint").is_dir()
    monkeypatch.setattr(training, "_save_checkpoint", saved)
    again = train_retriever(config, tmp_path, data_root=scifact_tiny.parent, progress=False)
    resumed = load_file(again.adapter / "adapter_model.safetensors")
    assert set(resumed) == set(reference)
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-4, atol=1e-6)
    assert [h["step"] for h in again.record["history"]] == list(range(1, config.steps + 1))
    assert not (tmp_path / ".tiny_ret.checkpoint").exists()


def test_a_checkpoint_of_another_configuration_is_refused(tiny_decoder, scifact_tiny, tmp_path):
    config = _config(tiny_decoder, steps=4, checkpoint_every=2)
    import robustir.experiments.training as training

    checkpoint = tmp_path / ".tiny_ret.checkpoint"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text(json.dumps({"fingerprint": "0" * 16}))
    with pytest.raises(TrainingConfigError, match="another configuration of 'tiny_ret'"):
        training.train_retriever(config, tmp_path, data_root=scifact_tiny.parent, progress=False)


def test_bad_bases_and_grids_are_refused_before_training(tiny_decoder, scifact_tiny, tmp_path):
    from robustir.models import get_model_spec as spec_of

    encoder_only = _config(tiny_decoder, base_model=spec_of("minilm").weights_location())
    with pytest.raises(TrainingConfigError, match="not a decoder-only model"):
        train_retriever(encoder_only, tmp_path, data_root=scifact_tiny.parent, progress=False)
    grid = tmp_path / "train.yaml"
    grid.write_text("defaults: {steps: 3}\nmodels:\n  - {key: a, tempreature: 0.1}\n")
    with pytest.raises(TrainingConfigError, match=r"models\[0\]: unknown field\(s\) \['tempreature'\]"):
        load_training_configs(grid)
    grid.write_text("models: []\n")
    with pytest.raises(TrainingConfigError, match="no models to train"):
        load_training_configs(grid)
    empty = tmp_path / "data" / "scifact"
    shutil.copytree(scifact_tiny, empty)
    (empty / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises((TrainingDataError, ValueError), match="train"):
        training_data(_config(tiny_decoder), data_root=empty.parent)


def test_the_shipped_training_grid_is_valid():
    configs = load_training_configs(REPO / "configs" / "train.yaml")
    keys = [c.key for c in configs]
    assert keys == ["smollm2_ret", "smollm2_ret_l20", "smollm2_ret_l10"]
    assert [c.num_layers for c in configs] == [None, 20, 10]
    assert all(c.train_split == "train" and c.dataset == "scifact" for c in configs)
    # one recipe: only the depth differs
    recipes = {json.dumps({k: v for k, v in c.record().items() if k not in ("key", "num_layers", "trained_layers")},
                          sort_keys=True) for c in configs}
    assert len(recipes) == 1


def test_the_catalog_reads_each_trained_retriever_as_it_was_trained():
    from robustir.experiments.training import retriever_spec
    from robustir.models import MODELS

    for config in load_training_configs(REPO / "configs" / "train.yaml"):
        expected = retriever_spec(config, f"retrievers/{config.key}")
        entry = MODELS[config.key]
        differ = {f: (getattr(expected, f), getattr(entry, f))
                  for f in ModelSpec.__dataclass_fields__ if f not in ("parameters", "extra")
                  and getattr(expected, f) != getattr(entry, f)}
        assert not differ, config.key
        # the parameter count of the truncated decoder: embeddings + layers + final norm
        per_layer = 3_540_096
        assert entry.parameters == 28_311_552 + per_layer * (config.num_layers or 30) + 576


def test_adversarial_passages_end_as_the_retrievers_documents_do(trained, tiny_decoder):
    """A retriever that appends the EOS token to every document gets it after a HotFlip
    passage too: the attack targets the system's own document path."""
    from robustir.attack import _DocumentPath, embed_passages

    config, result = trained
    spec = ModelSpec("tiny_ret", "tiny", str(tiny_decoder), "offline decoder-only retriever",
                     pooling="last_token", padding_side="left", prompt_style="instruct",
                     append_eos=True, adapter=str(result.adapter), max_length=config.max_length,
                     dtype="float32")
    encoder = Encoder(spec, progress=False)
    passage = encoder.tokenizer("Vitamin D lowers the risk of fractures", add_special_tokens=False)["input_ids"]
    path = _DocumentPath(encoder, "scifact", prompt_mask_with_special_tokens=True)
    ids = path.input_ids(torch.tensor([passage]))[0].tolist()
    assert ids == passage + [encoder.tokenizer.eos_token_id]
    # the passage embedded from its ids is the document the encoder embeds from its text
    from_ids = embed_passages(encoder, [passage], "scifact")[0]
    from_text = encoder.encode_texts([encoder.tokenizer.decode(passage)])[0]
    assert float(from_ids @ from_text) > 0.999


def test_the_depth_series_shares_one_pass_of_the_frozen_layers(tiny_decoder, scifact_tiny, tmp_path):
    """Runs with the same data read their frozen states from one pass; each result equals the
    run trained alone (the states are the base model's own below every run's trained layers)."""
    from safetensors.torch import load_file

    from robustir.experiments.training import train_retrievers

    deep = _config(tiny_decoder, key="deep", steps=4)                    # 3 layers, 2 frozen
    shallow = _config(tiny_decoder, key="shallow", steps=4, num_layers=2)  # 2 layers, 1 frozen
    together = train_retrievers([deep, shallow], tmp_path / "together",
                                data_root=scifact_tiny.parent, progress=False)
    assert together[1].record["frozen_states_shared_with"] == ["deep"]
    alone = train_retriever(shallow, tmp_path / "alone", data_root=scifact_tiny.parent, progress=False)
    shared, single = (load_file(r.adapter / "adapter_model.safetensors") for r in (together[1], alone))
    assert set(shared) == set(single)
    for name in single:
        torch.testing.assert_close(shared[name], single[name], rtol=1e-3, atol=1e-5)
