"""The library's layers: each module imports only modules of its own layer or below.

Layers (architecture.md): 1 facts and formats, 2 stages and generators, 3 experiments, 4 fronts.
A new module must be given a layer here; the test fails on an upward import, so "perturb/ and
attack.py import nothing from evaluation, results, runs or stats" stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "robustir"

LAYERS = {
    1: ["data", "cranfield", "models", "model_sources", "embeddings", "cache", "results",
        "provenance", "trec", "resources"],
    2: ["encode", "fused", "retrieve", "retrievers", "metrics", "perturb", "attack", "geometry", "stats",
        "query_types"],
    3: ["experiments"],
    4: ["plots", "runs", "grid_checks", "processes", "preflight", "book", "book_pages", "cli"],
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _top(name: str) -> str:
    return name.split(".")[0]


def _imports(path: Path) -> set[str]:
    """The robustir submodules a file imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "robustir":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("robustir."):
                found.add(node.module.removeprefix("robustir."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("robustir.") for a in node.names
                         if a.name.startswith("robustir."))
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def test_every_module_has_a_layer():
    unknown = sorted({_top(_module_name(p)) for p in SOURCES if _module_name(p)} - set(LAYER_OF))
    assert not unknown, f"give these modules a layer in tests/test_architecture.py: {unknown}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import(path):
    name = _module_name(path)
    if not name:  # the package's __init__
        return
    layer = LAYER_OF[_top(name)]
    upward = sorted(m for m in _imports(path)
                    if _top(m) in LAYER_OF and LAYER_OF[_top(m)] > layer)
    assert not upward, f"{name} (layer {layer}) imports {upward} from a higher layer"


def test_generators_import_nothing_from_evaluation_results_runs_or_stats():
    forbidden = {"experiments", "results", "runs", "stats"}
    for path in [*PACKAGE.joinpath("perturb").glob("*.py"), PACKAGE / "attack.py"]:
        assert not {_top(m) for m in _imports(path)} & forbidden, path.name


def test_embeddings_need_neither_torch_nor_transformers():
    tree = ast.parse((PACKAGE / "embeddings.py").read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for a in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & {"torch", "transformers"}
    assert "encode" not in _imports(PACKAGE / "retrieve.py")


@pytest.mark.parametrize("name", ["evaluation", "query_variations", "corpus_poisoning", "geometry"])
def test_every_experiment_has_the_same_small_surface(name):
    """CONTRIBUTING.md's "Add an analysis": a store key, a writer and a summariser."""
    import importlib

    module = importlib.import_module(f"robustir.experiments.{name}")
    assert isinstance(module.EXPERIMENT, str) and module.EXPERIMENT
    assert callable(module.summarise)
    runner = {"evaluation": "evaluate", "query_variations": "evaluate_variation",
              "corpus_poisoning": "run_corpus_poisoning", "geometry": "run_geometry"}[name]
    assert callable(getattr(module, runner))



def test_the_grids_name_experiments_by_their_modules_store_keys():
    import importlib

    import yaml

    keys = {importlib.import_module(f"robustir.experiments.{name}").EXPERIMENT
            for name in ("evaluation", "query_variations", "corpus_poisoning", "geometry")}
    for name in ("default.yaml", "paper.yaml"):
        grid = yaml.safe_load((PACKAGE.parent.parent / "configs" / name).read_text())
        assert {a["experiment"] for a in grid["analyses"]} <= keys, name
