"""Plain-text tables for the command line."""

from __future__ import annotations


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print ``rows`` as left-aligned columns under a header line (nothing for no rows)."""
    if not rows:
        return
    columns = columns or list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(width[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(width[c]) for c in columns))
