"""``robustir vary``: variant files with provenance, and a clear refusal for unavailable families."""

from __future__ import annotations

import argparse
import json

from robustir.cli import vary as cli_vary
from robustir.data import load_queries
from robustir.perturb import query_words


def run_vary(*arguments: str) -> int:
    parser = argparse.ArgumentParser(prog="robustir")
    cli_vary.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vary", *arguments])
    return args.handler(args)


def one_character_edit(old: str, new: str) -> bool:
    """Whether ``new`` is ``old`` with one character substituted, inserted, deleted, or two
    neighbouring characters swapped."""
    if len(old) == len(new):
        differ = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        return len(differ) == 1 or (len(differ) == 2 and differ[1] == differ[0] + 1
                                    and old[differ[0]] == new[differ[1]] and old[differ[1]] == new[differ[0]])
    short, long = sorted((old, new), key=len)
    return len(long) == len(short) + 1 and any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def test_vary_writes_variants_readable_as_queries(scifact_mini, tmp_path, capsys):
    output = tmp_path / "variants" / "mini_misspelling_1999.jsonl"
    assert run_vary("--dataset", str(scifact_mini), "--family", "Misspelling", "--seed", "1999",
                    "--output", str(output)) == 0
    queries = load_queries(output)
    assert len(queries) == 40
    records = [json.loads(line) for line in output.read_text().splitlines()]
    originals = [json.loads(line) for line in (scifact_mini / "queries.jsonl").read_text().splitlines()]
    assert [(r["_id"], r["original"]) for r in records] == [(q["_id"], q["text"]) for q in originals]
    for record in records:
        # floor(10%) of the words (at least one) misspelt by one character each, the rest kept
        before, after = record["original"].split(), record["text"].split()
        assert len(before) == len(after), record
        edited = [(a, b) for a, b in zip(before, after) if a != b]
        budget = max(len(query_words(record["original"])) // 10, 1)  # TextAttack's word split
        assert bool(edited) == record["changed"] and len(edited) <= budget, record
        assert all(one_character_edit(a, b) for a, b in edited), edited
    assert sum(r["changed"] for r in records) >= 36  # a SciFact claim nearly always has a typo target
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
