"""Sphinx extension: read the library's docstrings as the plain text they are written in.

The library's Google-style docstrings use ``|x|`` for absolute values and set sizes, which
reStructuredText would take for substitution references (an error in the strict build). This
extension escapes ``|`` everywhere except inside ``inline literals`` and roles.
"""

from __future__ import annotations

import re

# Inline literals (``...``) and roles (:role:`...`) keep their text; everything else is escaped.
_PROTECTED = re.compile(r"(``.+?``|:[\w:+-]+:`[^`]+`)")


def _escape_bars(line: str) -> str:
    parts = _PROTECTED.split(line)
    return "".join(part if index % 2 else re.sub(r"(?<!\\)\|", r"\\|", part)
                   for index, part in enumerate(parts))


def _process(app, what, name, obj, options, lines):
    lines[:] = [_escape_bars(line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
