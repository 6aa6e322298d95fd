"""Bring your own retriever: a :class:`~robustir.models.ModelSpec` from a catalog key, a local
model folder, a YAML spec file, an inline mapping or a model-hub id.

:func:`resolve_model` is what every front (CLI, notebooks, grids) calls wherever a catalog key
used to be the only choice:

* a **catalog key** (``minilm``) gives the catalog entry;
* a **sentence-transformers folder** (``modules.json``) gives its pooling (``1_Pooling/config.json``),
  its normalisation (a ``Normalize`` module), its maximum length (``sentence_bert_config.json``),
  its prompts and its similarity (``config_sentence_transformers.json``);
* a **Hugging Face folder** (``config.json`` only) is read as the usual recipe for its kind:
  last-token pooling with left padding for decoder-only models, mean pooling otherwise, L2
  normalisation and cosine scores;
* a **YAML file** or a **mapping** holds ``source`` (any of the above) and overrides, or the
  :class:`~robustir.models.ModelSpec` fields of a new entry with its ``path``;
* anything else that looks like ``owner/name`` is a **hub id**, downloaded when the machine is
  online; offline, the error names what to download and where to point ``--model``.

Overrides (``pooling``, ``query_prompt``, ``document_prompt``, ``normalize``, ``score``, …)
change a system's embeddings, so they change its key: ``minilm`` with CLS pooling is stored as
``minilm~<hash>``, never under ``minilm``. A folder's key is its name plus a hash of its files
(weights, configuration, tokenizer and adapter), so two different folders both called
``model`` never share results or cached embeddings. The maximum length and the dtype are run
settings recorded with every result, as for catalog entries (``--max-length``, ``--dtype``).

Used in the book chapter "Reproducing" (its section "Rerun this page with another model") and by every run notebook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robustir.models import MODELS, ModelSpec, UnknownModelError
from robustir.provenance import files_sha256

__all__ = [
    "ADAPTER_FILES",
    "MODEL_OVERRIDES",
    "ModelSourceError",
    "folder_sha256",
    "resolve_model",
    "spec_from_folder",
]

log = logging.getLogger(__name__)

#: Override names (CLI ``--pooling`` …, YAML keys) and the :class:`ModelSpec` field each sets.
MODEL_OVERRIDES: dict[str, str] = {
    "pooling": "pooling",
    "query_prompt": "query_instruction",
    "document_prompt": "document_instruction",
    "normalize": "normalize",
    "score": "score",
    "max_length": "max_length",
    "dtype": "dtype",
    "padding_side": "padding_side",
    "append_eos": "append_eos",
    "layer": "layer",
    "display_name": "display_name",
}
#: Overrides that are run settings (recorded with results) rather than a new system.
_RUN_SETTINGS = {"max_length", "dtype", "display_name"}
_POOLINGS = ("mean", "cls", "last_token", "prompt_mean")
_SCORES = ("cos", "dot")
_DTYPES = ("float32", "bfloat16", "float16")
_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)} - {"extra"}
#: Files whose bytes define a folder model's output (weights, configuration, tokenizer).
_IGNORED_FILES = re.compile(r"(^|/)(\.|README|LICENSE)|\.md$", re.IGNORECASE)
_DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi",
                  "phi3", "gpt2", "gpt_neox", "olmo", "olmo2", "smollm3", "mixtral", "falcon"}
_ST_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last_token",
}


class ModelSourceError(ValueError):
    """A model source cannot be used; the message names the file or field and the fix."""


#: The files of a LoRA adapter folder that decide its output (not its training record or card).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def folder_sha256(folder: str | os.PathLike, *, files: tuple[str, ...] | None = None) -> str:
    """SHA-256 over the relative paths and bytes of the files that define a model folder.

    READMEs, licences and hidden files are left out: they do not change the embeddings.

    Args:
        folder: The folder.
        files: Hash only these relative paths (e.g. :data:`ADAPTER_FILES`); default: all.
    """
    folder = Path(folder)
    found = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return files_sha256(folder, [p for p in found if not _IGNORED_FILES.search(p)
                                 and (files is None or p in files)])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelSourceError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def _sentence_transformers_settings(folder: Path) -> dict[str, Any]:
    """Pooling, normalisation, maximum length, prompts and score of a sentence-transformers folder."""
    modules = _read_json(folder / "modules.json")
    settings: dict[str, Any] = {"normalize": False}
    for module in modules:
        kind = str(module.get("type", ""))
        path = folder / module.get("path", "")
        if kind.endswith("Pooling"):
            config = _read_json(path / "config.json")
            modes = [name for flag, name in _ST_POOLING.items() if config.get(flag)]
            unsupported = [k for k, v in config.items()
                           if k.startswith("pooling_mode_") and v and k not in _ST_POOLING]
            if unsupported or len(modes) != 1:
                raise ModelSourceError(
                    f"{path / 'config.json'}: pooling {unsupported or modes} is not supported "
                    f"(robustir pools with one of {', '.join(_POOLINGS)}); pass --pooling")
            settings["pooling"] = modes[0]
        elif kind.endswith("Normalize"):
            settings["normalize"] = True
        elif not kind.endswith("Transformer"):
            raise ModelSourceError(
                f"{folder / 'modules.json'}: module {kind!r} is not supported (only Transformer, "
                "Pooling and Normalize); export the model without it")
    if "pooling" not in settings:
        raise ModelSourceError(f"{folder / 'modules.json'}: no Pooling module; pass --pooling")
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        length = _read_json(bert_config).get("max_seq_length")
        if length:
            settings["max_length"] = int(length)
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        config = _read_json(st_config)
        prompts = config.get("prompts") or {}
        if prompts.get("query"):
            settings["query_instruction"] = prompts["query"]
        for name in ("document", "passage", "corpus"):
            if prompts.get(name):
                settings["document_instruction"] = prompts[name]
                break
        similarity = config.get("similarity_fn_name") or "cosine"
        if similarity not in ("cosine", "dot"):
            raise ModelSourceError(f"{st_config}: similarity {similarity!r} is not supported "
                                   "(cosine or dot); pass --score")
        settings["score"] = "cos" if similarity == "cosine" else "dot"
    return settings


def _transformers_settings(folder: Path) -> dict[str, Any]:
    """The usual recipe for a plain Hugging Face folder, by the kind of its model."""
    config = _read_json(folder / "config.json")
    architectures = " ".join(config.get("architectures") or [])
    decoder = config.get("model_type") in _DECODER_TYPES or "CausalLM" in architectures
    if decoder:
        return {"pooling": "last_token", "padding_side": "left", "normalize": True}
    return {"pooling": "mean", "normalize": True}


def spec_from_folder(folder: str | os.PathLike) -> ModelSpec:
    """A spec for a local Hugging Face or sentence-transformers model folder.

    Raises:
        ModelSourceError: The folder holds no model (neither ``config.json`` nor
            ``modules.json``), or its configuration asks for what robustir cannot do.
    """
    folder = Path(folder).resolve()
    if (folder / "modules.json").is_file():
        settings = _sentence_transformers_settings(folder)
    elif (folder / "config.json").is_file():
        settings = _transformers_settings(folder)
    else:
        raise ModelSourceError(
            f"{folder} is not a model folder: it has neither config.json (Hugging Face) nor "
            "modules.json (sentence-transformers); save the model with save_pretrained() or "
            "SentenceTransformer.save() and pass that folder")
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"{folder}: the sentence-transformers folder keeps its "
                               "Transformer module elsewhere; pass the folder with config.json")
    digest = folder_sha256(folder)
    settings.setdefault("max_length", 512)
    return ModelSpec(
        key=f"{_slug(folder.name)}-{digest[:10]}", display_name=folder.name, hf_id=str(folder),
        family="user model", dtype="float32", weights_sha256=digest,
        note=f"local folder {folder}", **settings,
    )


def _spec_from_hub(model_id: str) -> ModelSpec:
    """Download (or find in the local hub cache) a hub model and read it as a folder."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
    try:
        folder = snapshot_download(model_id, local_files_only=offline)
    except Exception as error:  # noqa: BLE001 - hub errors have many types; all mean "not here"
        raise ModelSourceError(
            f"model {model_id!r} is not in the catalog, not a local folder and could not be "
            f"fetched from the model hub ({type(error).__name__}). On a machine with a network "
            f"run `huggingface-cli download {model_id} --local-dir DIR`, copy DIR here and pass "
            "--model DIR (see `robustir models` for the catalog)") from None
    return spec_from_folder(folder)


def _check_override(name: str, value: Any, where: str) -> None:
    checks = {
        "pooling": lambda v: v in _POOLINGS,
        "score": lambda v: v in _SCORES,
        "dtype": lambda v: v in _DTYPES,
        "padding_side": lambda v: v in ("left", "right", None),
        "normalize": lambda v: isinstance(v, bool),
        "append_eos": lambda v: isinstance(v, bool),
        "max_length": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "layer": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    }
    if name in checks and not checks[name](value):
        allowed = {"pooling": _POOLINGS, "score": _SCORES, "dtype": _DTYPES}.get(name)
        hint = f"one of {', '.join(allowed)}" if allowed else "see `robustir evaluate --help`"
        raise ModelSourceError(f"{where}: {name} = {value!r} is not valid ({hint})")


def _apply_overrides(spec: ModelSpec, overrides: Mapping[str, Any], where: str) -> ModelSpec:
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "padding_side"}
    unknown = sorted(set(overrides) - set(MODEL_OVERRIDES))
    if unknown:
        raise ModelSourceError(f"{where}: unknown setting(s) {unknown}; allowed: "
                               f"{', '.join(sorted(MODEL_OVERRIDES))}")
    for name, value in overrides.items():
        _check_override(name, value, where)
    fields = {MODEL_OVERRIDES[k]: v for k, v in overrides.items()}
    changed = {k: v for k, v in fields.items() if getattr(spec, k) != v}
    if not changed:
        return spec
    if not spec.is_dense and set(changed) - {"display_name"}:
        raise ModelSourceError(f"{where}: {spec.key!r} is not a dense model; only display_name "
                               "can be set")
    identity = {k: v for k, v in overrides.items()
                if k not in _RUN_SETTINGS and MODEL_OVERRIDES[k] in changed}
    key = spec.key
    if identity:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        key = f"{spec.key}~{digest[:8]}"
    return dataclasses.replace(spec, key=key, **changed)


def _spec_from_mapping(mapping: Mapping[str, Any], where: str, base: Path) -> ModelSpec:
    """A spec from a YAML/grid mapping: ``source`` plus overrides, or a new entry's fields."""
    mapping = dict(mapping)
    if "source" in mapping or "model" in mapping:
        source = mapping.pop("source", None) or mapping.pop("model")
        if isinstance(source, str) and not source.startswith(("/", "~")) and (base / source).exists():
            source = str(base / source)
        return resolve_model(source, where=where, **mapping)
    unknown = sorted(set(mapping) - _SPEC_FIELDS - {"path"})
    if unknown:
        raise ModelSourceError(f"{where}: unknown field(s) {unknown}; give `source:` (a catalog "
                               f"key, folder or hub id) with overrides, or the fields of a model "
                               f"spec: {', '.join(sorted(_SPEC_FIELDS | {'path'}))}")
    path = mapping.pop("path", None)
    if path is None:
        raise ModelSourceError(f"{where}: a new model needs `path:` (its folder) or `source:`")
    folder = Path(path).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    spec = spec_from_folder(folder)
    for name, value in mapping.items():
        if name in MODEL_OVERRIDES:
            _check_override(name, value, where)
    return dataclasses.replace(spec, **mapping)


def resolve_model(model: str | os.PathLike | Mapping[str, Any] | ModelSpec, *,
                  where: str | None = None, **overrides: Any) -> ModelSpec:
    """The spec of a catalog key, model folder, YAML spec file, mapping or hub id.

    Args:
        model: What the user named (see the module docstring for the forms).
        where: Where the name came from, for error messages (a file and field).
        **overrides: Settings that replace the source's (:data:`MODEL_OVERRIDES`); ``None``
            values are ignored, so CLI options left unset change nothing.

    Returns:
        The spec, keyed by catalog key, folder name + content hash, or key + override hash.

    Raises:
        ModelSourceError: A folder that is not a model, a spec file with unknown fields, an
            invalid override, or a hub id that cannot be fetched; before any encoding starts.
        UnknownModelError: A bare name that is neither a catalog key nor a path or hub id.
    """
    if where is None:
        where = "model" if isinstance(model, Mapping) else f"model {str(model)!r}"
    if isinstance(model, ModelSpec):
        spec = model
    elif isinstance(model, Mapping):
        spec = _spec_from_mapping(model, where, Path.cwd())
    elif str(model) in MODELS:
        spec = MODELS[str(model)]
    else:
        path = Path(model).expanduser()
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                content = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise ModelSourceError(f"{path}: not valid YAML: {error}") from None
            if not isinstance(content, Mapping):
                raise ModelSourceError(f"{path}: a model spec file holds a mapping of fields")
            spec = _spec_from_mapping(content, str(path), path.parent.resolve())
        elif path.is_dir():
            spec = spec_from_folder(path)
        elif path.exists():
            raise ModelSourceError(f"{path} is a file, not a model folder or a .yaml spec")
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", str(model)) and not str(model).startswith("."):
            spec = _spec_from_hub(str(model))
        else:
            raise UnknownModelError(
                f"unknown model {str(model)!r}; known models: {', '.join(MODELS)} (see "
                "`robustir models`); nor is it an existing folder, a .yaml spec or a hub id")
    return _apply_overrides(spec, overrides, where)
