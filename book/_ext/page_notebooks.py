"""Sphinx extension: every page downloads as a notebook, and launch buttons open one that exists.

sphinx-book-theme builds the download and launch buttons from ``_config.yml``
(``launch_buttons``, ``repository``). Left alone, it gets three things wrong for this book:

* only notebook pages get an ``.ipynb`` download. Here every other page (a Markdown chapter, the
  Protocol appendix) gets one too: its MyST source converted by jupytext, written beside the
  sources as ``_sources/<page>.ipynb``;
* a launch button opens the page's own path in the repository, but an executed run page
  (``book/runs/…``) is generated and never committed. Its buttons open the notebook that
  produced it instead, ``notebooks/<name>.py``, named by papermill's record of its input;
* Colab opens only ``.ipynb`` files of a repository, so its button is left out where the
  notebook to open is a MyST or py:percent text file (Binder opens those with jupytext).

A page with no notebook to open gets no launch buttons.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

# sphinx-book-theme fills ``header_buttons`` and the launch buttons at priority 501.
_BEFORE_THEME, _AFTER_THEME = 500, 502
SOURCE_NOTEBOOKS = "notebooks"
"""Folder of the py:percent notebooks that the grid runner executes into run pages."""


def _is_notebook(app, pagename: str) -> bool:
    return "kernelspec" in app.env.metadata.get(pagename, {}) or \
        Path(app.env.doc2path(pagename)).suffix == ".ipynb"


def _offer_notebook(app, pagename, templatename, context, doctree) -> None:
    """Write a non-notebook page's source as ``_sources/<page>.ipynb`` and offer it."""
    if doctree is None or context.get("ipynb_source") or _is_notebook(app, pagename):
        return
    source = Path(app.env.doc2path(pagename))
    if source.suffix != ".md":
        return
    notebook = jupytext.reads(source.read_text(encoding="utf-8"), fmt="md:myst")
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(target))
    context["ipynb_source"] = f"{pagename}.ipynb"


def launch_target(srcdir: Path, source: Path) -> str | None:
    """The repository path a page's launch buttons should open, relative to ``srcdir``.

    Args:
        srcdir: The book's source folder (the repository root).
        source: The page's source file.

    Returns:
        The page's own path; for a notebook executed by papermill, the source notebook it was
        made from (``notebooks/<input stem>.py`` or ``.ipynb``); ``None`` when that source is
        not in the repository.
    """
    if source.suffix == ".ipynb":
        metadata = nbformat.read(str(source), as_version=4).metadata
        executed_from = metadata.get("papermill", {}).get("input_path")
        if executed_from:
            stem = Path(executed_from).stem
            for candidate in (Path(SOURCE_NOTEBOOKS) / f"{stem}.py",
                              Path(SOURCE_NOTEBOOKS) / f"{stem}.ipynb"):
                if (srcdir / candidate).is_file():
                    return candidate.as_posix()
            return None
    return source.relative_to(srcdir).as_posix()


def _aim_launch_buttons(app, pagename, templatename, context, doctree) -> None:
    """Point the theme's launch buttons at a notebook that exists in the repository."""
    groups = [b for b in context.get("header_buttons", []) if b.get("label") == "launch-buttons"]
    if not groups:
        return
    group = groups[0]
    source = Path(app.env.doc2path(pagename))
    srcdir = Path(app.srcdir)
    prefix = app.config.html_theme_options.get("path_to_docs", "").strip("/")
    prefix = f"{prefix}/" if prefix else ""
    own = prefix + source.relative_to(srcdir).as_posix()
    target = launch_target(srcdir, source)
    buttons = []
    for button in group["buttons"] if target is not None else []:
        if button.get("type") == "link":
            if button.get("text") == "Colab" and not target.endswith(".ipynb"):
                continue
            button = {**button, "url": button["url"].replace(own, prefix + target)}
        buttons.append(button)
    if buttons:
        group["buttons"] = buttons
    else:
        context["header_buttons"].remove(group)


def setup(app):
    app.connect("html-page-context", _offer_notebook, priority=_BEFORE_THEME)
    app.connect("html-page-context", _aim_launch_buttons, priority=_AFTER_THEME)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
