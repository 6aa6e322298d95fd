"""Sphinx extension: a link to a run page that this build did not produce stays text.

The chapters link generated pages (``book/runs/…``, e.g. the findings summary from the home
page), but which run pages exist depends on the grid: ``robustir book`` leaves out of the table
of contents what a grid did not produce. A ``{doc}`` reference to such a page would be an
"unknown document" warning and fail the strict build. This extension resolves it to its own
text followed by "(not part of this build)", and reports it at info level, so a small grid
builds and a reader is told why there is no link. A missing page anywhere else is still a
warning.

Configuration (``_config.yml`` ``sphinx.config``): ``run_pages_prefix``, the docname prefix of
the generated pages (default ``book/runs/``).
"""

from __future__ import annotations

import posixpath

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

NOT_BUILT = " (not part of this build)"


def _target_docname(node) -> str:
    """The docname a ``{doc}`` reference points at, resolved against its own document."""
    target = node["reftarget"]
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(node["refdoc"]), target))


def _unbuilt_run_page(app, env, node, contnode):
    """``missing-reference`` handler: text instead of a dangling link to an unbuilt run page."""
    if node.get("reftype") != "doc":
        return None
    docname = _target_docname(node)
    if not docname.startswith(app.config.run_pages_prefix):
        return None
    logger.info("%s: %s is not part of this build; its link stays text", node["refdoc"], docname)
    return nodes.inline("", "", contnode, nodes.Text(NOT_BUILT))


def setup(app):
    app.add_config_value("run_pages_prefix", "book/runs/", "env")
    app.connect("missing-reference", _unbuilt_run_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
