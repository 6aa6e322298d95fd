"""Sphinx extension: every "protocol §x.y" in the book links to the Protocol appendix.

The library's docstrings, the notebooks and the chapters cite the study's protocol by section:
``protocol §2.5``, ``§1.4.8``, ``§8.1 row 13``, ``§8.2 items 7, 8``, ``§5.2 step 7.4``,
``§5.1-5.2``. The appendix (``book/protocol.md``) carries one MyST target per section, named
after its number:

* a section or numbered sub-item: ``§1.4`` → ``protocol-1-4``, ``§1.4.3`` → ``protocol-1-4-3``;
* a row, item or step: ``§8.1 row 13`` → ``protocol-8-1-row-13``, ``§8.2 item 5`` →
  ``protocol-8-2-item-5``, ``§5.2 step 7.4`` → ``protocol-5-2-step-7-4``, falling back to the
  step's leading number (``protocol-5-2-step-7``). A qualifier of a section that has no anchors
  of that kind links to the section itself (``§4.3, row 6`` → ``protocol-4-3``).

One doctree transform, :class:`ProtocolReferences`, turns the references of every page into
links: the MyST chapters, the notebooks' Markdown cells and Markdown outputs, and the library's
docstrings, which autodoc and napoleon have turned into text of the API page by the time the
transform runs, so the library's files need no edits. Code, literals, titles and existing links
are left alone. A reference whose section has no anchor stays text and is reported as a warning
(type ``protocol``, subtype ``dangling``) naming the file, the line and the reference, e.g.
``lib/robustir/data.py:docstring of robustir.data.load_qrels:12: '§9.9' has no anchor …``, so
the strict build (``-W``) fails. A ``§`` preceded by another document's name
(``environment.md §4.4``) is that document's and is neither linked nor checked.

Configuration (``conf.py`` / ``_config.yml`` ``sphinx.config``): ``protocol_document``, the
docname of the appendix (default ``book/protocol``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

LABEL_PREFIX = "protocol-"

_REFERENCE = re.compile(
    r"§\s?(?P<section>\d+(?:\.\d+)*)"
    # a range without a second "§" (§5.1-5.2); "§6.1–§6.5" is read as two references
    r"(?:[–-](?P<last>\d+(?:\.\d+)*))?"
    r"(?:,?\s(?P<kind>row|item|step)s?\s(?P<number>\d+(?:\.\d+)*))?"
)
# another document's section: "environment.md §4.4"
_OTHER_DOCUMENT = re.compile(r"(?P<document>[\w.-]+\.md)\s*$")
# what may join the references of one list: "§1.2, §1.4.8", "§6.1–§6.5", "§3.1 and §3.2"
_JOINER = re.compile(r"\s*(?:,|;|/|–|-|and|or)?\s*")
_TARGET_LINE = re.compile(rf"^\(({re.escape(LABEL_PREFIX)}[\w-]+)\)=\s*$", re.MULTILINE)
# doctree nodes whose text is not prose, or is a link already
_SKIPPED = (nodes.FixedTextElement, nodes.literal, nodes.raw, nodes.math, nodes.comment,
            nodes.reference, nodes.target, nodes.title, addnodes.pending_xref)


@dataclass(frozen=True)
class Reference:
    """One protocol reference found in a text.

    Attributes:
        start, end: Its span in the text (the link text).
        section: Dotted section number (``"8.1"``).
        last: Dotted end of a range without a second ``§`` (``"5.2"`` in ``§5.1-5.2``), else ``""``.
        kind: ``row``, ``item`` or ``step`` when qualified, else ``""``.
        number: The row, item or step number (``"7.4"``), else ``""``.
    """

    start: int
    end: int
    section: str
    last: str = ""
    kind: str = ""
    number: str = ""

    def text_in(self, source: str) -> str:
        """The reference as written in ``source``."""
        return source[self.start:self.end]


def references(text: str) -> list[Reference]:
    """The protocol references of ``text``, in order, without other documents' sections.

    A ``§`` right after another Markdown document's name (``environment.md §4.4``) belongs to
    that document, and so do the references joined to it by commas, dashes or "and"
    (``environment.md §7.1, §7.3``); ``protocol.md §10`` and a bare ``§`` are the protocol's.
    """
    found: list[Reference] = []
    foreign = False
    previous_end = None
    for match in _REFERENCE.finditer(text):
        joined = previous_end is not None and _JOINER.fullmatch(text[previous_end:match.start()])
        if not joined:
            other = _OTHER_DOCUMENT.search(text, 0, match.start())
            foreign = other is not None and other["document"] != "protocol.md"
        previous_end = match.end()
        if not foreign:
            found.append(Reference(match.start(), match.end(), match["section"], match["last"] or "",
                                   match["kind"] or "", match["number"] or ""))
    return found


def section_label(section: str) -> str:
    """The anchor of a dotted section number: ``"1.4.3"`` → ``"protocol-1-4-3"``."""
    return LABEL_PREFIX + section.replace(".", "-")


def target(reference: Reference, anchors: set[str] | frozenset[str]) -> str | None:
    """The anchor ``reference`` links to, or ``None`` when it dangles.

    The section (and the end of a range) must have an anchor. A row, item or step links to its
    own anchor, or to the anchor of its leading number (step 7.4 → step 7); a section with no
    anchors of that kind is linked as a whole.
    """
    section = section_label(reference.section)
    if section not in anchors or (reference.last and section_label(reference.last) not in anchors):
        return None
    if not reference.kind:
        return section
    prefix = f"{section}-{reference.kind}-"
    if not any(anchor.startswith(prefix) for anchor in anchors):
        return section
    parts = reference.number.split(".")
    for count in range(len(parts), 0, -1):
        label = prefix + "-".join(parts[:count])
        if label in anchors:
            return label
    return None


def anchors_in(markdown: str) -> frozenset[str]:
    """The ``(protocol-…)=`` targets of a MyST document."""
    return frozenset(_TARGET_LINE.findall(markdown))


def _dangling(reference_text: str, document: str) -> str:
    return (f"{reference_text!r} has no anchor in the Protocol appendix ({document}): fix the "
            "reference or add the section's target there")


# --- Sphinx ---------------------------------------------------------------------------------
def _load_anchors(app) -> None:
    """Read the appendix's targets once per build (the file, not the environment: the labels of
    a page read later are not known yet when an earlier page is transformed)."""
    document = app.config.protocol_document
    path = next((Path(app.srcdir) / (document + suffix) for suffix in (".md", ".rst")
                 if (Path(app.srcdir) / (document + suffix)).is_file()), None)
    if path is None:
        logger.warning("the Protocol appendix %r is missing: protocol references cannot be linked",
                       document, type="protocol", subtype="missing")
        app.env.protocol_anchors = frozenset()
        return
    app.env.protocol_anchors = anchors_in(path.read_text(encoding="utf-8"))


class ProtocolReferences(SphinxTransform):
    """Link the protocol references of every page's prose to the appendix."""

    default_priority = 700

    def apply(self, **kwargs) -> None:
        anchors = self.env.protocol_anchors
        for text_node in list(self.document.findall(nodes.Text)):
            if "§" not in text_node or self._skipped(text_node):
                continue
            self._link(text_node, anchors)

    @staticmethod
    def _skipped(node: nodes.Node) -> bool:
        parent = node.parent
        while parent is not None:
            if isinstance(parent, _SKIPPED):
                return True
            parent = parent.parent
        return False

    def _link(self, text_node: nodes.Text, anchors) -> None:
        text = str(text_node)
        replacement: list[nodes.Node] = []
        position = 0
        for reference in references(text):
            label = target(reference, anchors)
            if label is None:
                logger.warning(_dangling(reference.text_in(text), self.config.protocol_document),
                               location=text_node.parent, type="protocol", subtype="dangling")
                continue
            replacement.append(nodes.Text(text[position:reference.start]))
            link = addnodes.pending_xref("", refdomain="std", reftype="ref", reftarget=label,
                                         refexplicit=True, refwarn=True,
                                         refdoc=self.env.docname)
            link += nodes.inline(reference.text_in(text), reference.text_in(text),
                                 classes=["xref", "std", "std-ref"])
            replacement.append(link)
            position = reference.end
        if replacement:
            replacement.append(nodes.Text(text[position:]))
            text_node.parent.replace(text_node, replacement)


def setup(app):
    app.add_config_value("protocol_document", "book/protocol", "env", [str])
    app.connect("builder-inited", _load_anchors)
    app.add_transform(ProtocolReferences)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
