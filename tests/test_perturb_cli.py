"""``robustir vary``: variant files with provenance, and a clear refusal for unavailable families."""

from __future__ import annotations

import argparse
import json

from robustir.cli import vary as cli_vary
from robustir.data import load_queries


def run_vary(*arguments: str) -> int:
    parser = argparse.ArgumentParser(prog="robustir")
    cli_vary.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vary", *arguments])
    return args.handler(args)


def test_vary_writes_variants_readable_as_queries(scifact_mini, tmp_path, capsys):
    output = tmp_path / "variants" / "mini_misspelling_1999.jsonl"
    assert run_vary("--dataset", str(scifact_mini), "--family", "Misspelling", "--seed", "1999",
                    "--output", str(output)) == 0
    queries = load_queries(output)
    assert len(queries) == 40
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert all(r["changed"] == (r["text"] != r["original"]) for r in records)
    provenance = json.loads((output.parent / "mini_misspelling_1999.provenance.json").read_text())
    assert provenance["family"] == "mispelling" and provenance["seed"] == 1999
    assert provenance["n_changed"] == sum(r["changed"] for r in records)
    assert "queries changed" in capsys.readouterr().out


def test_vary_reports_an_unavailable_family_with_its_reason(scifact_mini, tmp_path, capsys):
    from robustir.perturb import FamilyUnavailable, register_family, variation

    def needs_the_hub(**options):
        raise FamilyUnavailable("hub_only", "its model 'org/generator' comes from the model hub")

    register_family("hub_only", "Hub only")(needs_the_hub)
    output = tmp_path / "hub_only.jsonl"
    try:
        assert run_vary("--dataset", str(scifact_mini), "--family", "hub_only", "--seed", "5",
                        "--output", str(output)) == 3
    finally:
        variation.FAMILIES.pop("hub_only")
        variation.FAMILY_NAMES.pop("hub_only")
        for name in ("hub_only", "hub only"):
            variation._ALIASES.pop(name)
    assert "'org/generator' comes from the model hub" in capsys.readouterr().err
    assert not output.exists()
