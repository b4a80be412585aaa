"""Parse annotation XML safely and keep the line of every element.

Built on the standard library's expat parser (what ElementTree uses) with document type
declarations refused outright: CVAT and VOC files never need one, and refusing them rules out
entity-expansion attacks (billion laughs) and external entities in files users upload.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from vitrine.core.errors import NotFound, VitrineError

__all__ = ["XmlDoc", "parse_xml"]


class _Refused(Exception):
    pass


class XmlDoc:
    """The root element and the line where each element starts (``doc.line(elem)``)."""

    def __init__(self, root: ET.Element, lines: dict[int, int]):
        self.root = root
        self._lines = lines

    def line(self, elem: ET.Element) -> int:
        return self._lines.get(id(elem), 0)


def parse_xml(path: Path) -> XmlDoc:
    """Parse ``path``; a syntax error or a DTD raises :class:`VitrineError` naming the line and column."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"XML file not found: {path}") from None
    except OSError as exc:
        raise VitrineError(f"cannot read {path}: {exc.strerror or exc}") from None

    parser = expat.ParserCreate()
    stack: list[ET.Element] = []
    lines: dict[int, int] = {}
    holder: list[ET.Element] = []

    def start(tag, attrs):
        elem = ET.Element(tag, attrs) if not stack else ET.SubElement(stack[-1], tag, attrs)
        lines[id(elem)] = parser.CurrentLineNumber
        if not stack:
            holder.append(elem)
        stack.append(elem)

    def end(tag):
        stack.pop()

    def text(data):
        if not stack:
            return
        top = stack[-1]
        if len(top):
            top[-1].tail = (top[-1].tail or "") + data
        else:
            top.text = (top.text or "") + data

    def refuse(*_args):
        raise _Refused()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except _Refused:
        raise VitrineError(
            f"{path}: line {parser.CurrentLineNumber}: a document type declaration (<!DOCTYPE>/<!ENTITY>) is not "
            "accepted",
            hint="annotation files do not need one; remove it",
        ) from None
    except (LookupError, ValueError) as exc:  # an unknown encoding="..." in the XML declaration
        raise VitrineError(f"{path}: cannot decode the XML ({exc})", hint="save the file as UTF-8") from None
    except expat.ExpatError as exc:
        raise VitrineError(
            f"{path}: not well-formed XML: {expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset + 1}",
            hint="fix the file (truncated export? unescaped & or <?) and try again",
        ) from None
    if not holder:
        raise VitrineError(f"{path}: empty XML document")
    return XmlDoc(holder[0], lines)
