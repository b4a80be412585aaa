"""The project ontology: the keywords an archivist wants to find, each with a description.

File format (``<project>/ontology/<project>_ontology.txt``, UTF-8), one entry per line::

    "Église": "photographie d'une église romane"
    "Calvaire": "croix monumentale en pierre",

* keyword and description are JSON strings (straight double quotes; ``\\"`` and other JSON escapes
  work); a trailing comma is allowed, so the body of a JSON object can be pasted as is;
* blank lines, lines that are exactly ``{`` or ``}`` and lines starting with ``#`` are ignored;
* whitespace around the tokens and Windows line endings are fine.

Parsing never stops at the first bad line: every problem is collected as a :class:`LineProblem`
(file, line number, the line itself, and a message saying what is wrong and how to fix it) and
the good lines are still used. Keywords are normalised to Unicode NFC so that an "É" typed as
``E`` + combining accent matches one typed as a single character.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from vitrine.core.errors import NotFound, OntologyError

__all__ = [
    "LineProblem",
    "Ontology",
    "OntologyCache",
    "OntologyEntry",
    "load_ontology",
    "ontology_to_csv",
    "parse_ontology",
]

EXAMPLE_LINE = '"Keyword": "description"'

# Typographic quotes that word processors substitute for straight quotes.
_SMART_DOUBLE = "\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033"  # “ ” „ ‟ « » ″
_SMART_SINGLE = "\u2018\u2019\u201a\u201b"  # ‘ ’ ‚ ‛
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_JSON_STRING = json.decoder.scanstring  # (s, index after the opening quote, strict) -> (str, end)


@dataclass(frozen=True)
class OntologyEntry:
    keyword: str
    description: str
    line: int


@dataclass(frozen=True)
class LineProblem:
    """One bad line. ``line`` is 1-based (0: the file as a whole, e.g. missing)."""

    file: str
    line: int
    text: str
    message: str
    severity: str = "error"  # "error": the line was not used; "warning": it was used, but check it

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Ontology:
    entries: list[OntologyEntry]
    problems: list[LineProblem]
    source: str
    _by_key: dict[str, OntologyEntry] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_fold: dict[str, OntologyEntry] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            self._by_key.setdefault(entry.keyword, entry)
            self._by_fold.setdefault(_fold(entry.keyword), entry)

    @property
    def keywords(self) -> list[str]:
        return [e.keyword for e in self.entries]

    @property
    def errors(self) -> list[LineProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[LineProblem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        """True when no line had an error (warnings allowed)."""
        return not self.errors

    def get(self, keyword: str) -> OntologyEntry:
        """The entry for ``keyword``: exact match first, then ignoring case (and Unicode form)."""
        entry = self._by_key.get(keyword)
        if entry is None:
            entry = self._by_key.get(unicodedata.normalize("NFC", keyword.strip()))
        if entry is None:
            entry = self._by_fold.get(_fold(keyword))
        if entry is None:
            known = self.keywords
            shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30 else "")
            hint = f"known keywords: {shown}" if known else f"the ontology {self.source} has no keywords"
            raise NotFound(f"unknown keyword {keyword!r}", hint=hint)
        return entry

    def __contains__(self, keyword: object) -> bool:
        if not isinstance(keyword, str):
            return False
        try:
            self.get(keyword)
        except NotFound:
            return False
        return True

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def raise_for_errors(self) -> None:
        """Raise :class:`OntologyError` listing every error line (warnings are not raised)."""
        errors = self.errors
        if errors:
            listing = "\n".join(str(p) for p in errors[:50])
            more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
            raise OntologyError(
                f"{len(errors)} problem(s) in the ontology {self.source}:\n{listing}{more}",
                hint=f"each line must look like {EXAMPLE_LINE}",
            )

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "entries": [asdict(e) for e in self.entries],
            "problems": [p.to_dict() for p in self.problems],
        }


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip()).casefold()


# ----------------------------------------------------------------------------------------- parsing


class _BadLine(Exception):
    def __init__(self, message: str, severity: str = "error"):
        super().__init__(message)
        self.message = message
        self.severity = severity


def _skip_ws(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t\f\v\u00a0\ufeff":
        i += 1
    return i


def _has_smart_quotes(s: str) -> bool:
    return any(c in _SMART_DOUBLE for c in s)


def _smart_quote_message(s: str) -> str:
    found = "".join(sorted({c for c in s if c in _SMART_DOUBLE}))
    return (
        f'curly/typographic quotes ({found}) are used instead of straight double quotes ("); '
        "this often happens when the file is edited in Word or another word processor: "
        f"retype the quotes in a plain-text editor, e.g. {EXAMPLE_LINE}"
    )


def _read_string(s: str, i: int, what: str) -> tuple[str, int]:
    """Read a JSON string starting at ``s[i]`` (which must be ``"``); return (value, end index)."""
    if i >= len(s) or s[i] != '"':
        raise AssertionError("caller checks the opening quote")
    try:
        return _JSON_STRING(s, i + 1, False)
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unterminated string"):
            if _has_smart_quotes(s[i + 1 :]):
                raise _BadLine(_smart_quote_message(s)) from None
            raise _BadLine(f'the {what} has no closing double quote ("): expected {EXAMPLE_LINE}') from None
        if "escape" in exc.msg:
            bad = s[exc.pos : exc.pos + 2] if s[exc.pos : exc.pos + 1] == "\\" else s[exc.pos - 1 : exc.pos + 1]
            raise _BadLine(
                f"invalid backslash escape {bad} in the {what}: write \\\\ for a "
                'literal backslash and \\" for a double quote inside the text'
            ) from None
        raise _BadLine(f"cannot read the {what}: {exc.msg} (column {exc.colno})") from None


def _not_quoted(s: str, i: int, what: str) -> _BadLine:
    rest = s[i:]
    if not rest:
        if what == "description":
            return _BadLine(f"the description is missing after the colon: expected {EXAMPLE_LINE}")
        return _BadLine(f"the {what} is missing: expected {EXAMPLE_LINE}")
    if rest[0] in _SMART_DOUBLE or _has_smart_quotes(rest):
        return _BadLine(_smart_quote_message(s))
    if rest[0] in "'" + _SMART_SINGLE:
        return _BadLine(f'the {what} is in single quotes; use straight double quotes ("), e.g. {EXAMPLE_LINE}')
    return _BadLine(f'the {what} is not enclosed in double quotes ("): expected {EXAMPLE_LINE}, found {_excerpt(rest)}')


def _excerpt(text: str, limit: int = 40) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _parse_line(s: str) -> tuple[str, str]:
    """Parse one stripped, non-blank, non-comment line; raise _BadLine for problems."""
    # --- keyword
    if s[0] != '"':
        if ":" not in s and '"' not in s and not _has_smart_quotes(s):
            raise _BadLine(
                f"this line is not an entry (no quotes, no colon): expected {EXAMPLE_LINE} "
                "(start the line with # to make it a comment)"
            )
        raise _not_quoted(s, 0, "keyword")
    keyword, i = _read_string(s, 0, "keyword")
    i = _skip_ws(s, i)
    # --- colon
    if i >= len(s) or s[i] != ":":
        rest = s[i:]
        if ":" in keyword and rest.rstrip(",").rstrip().endswith('"'):
            raise _BadLine(
                f"the keyword seems to be missing its closing double quote before the colon: expected {EXAMPLE_LINE}"
            )
        if not rest:
            raise _BadLine(f"missing colon and description after the keyword: expected {EXAMPLE_LINE}")
        if rest[0] in "=\u2013\u2014-" or rest[0] == ",":
            raise _BadLine(f"expected a colon (:) after the keyword, found {rest[0]!r}: expected {EXAMPLE_LINE}")
        raise _BadLine(f"missing colon (:) between the keyword and the description: expected {EXAMPLE_LINE}")
    i = _skip_ws(s, i + 1)
    # --- description
    if i >= len(s) or s[i] != '"':
        raise _not_quoted(s, i, "description")
    description, i = _read_string(s, i, "description")
    i = _skip_ws(s, i)
    # --- optional trailing comma, then nothing
    if i < len(s) and s[i] == ",":
        i = _skip_ws(s, i + 1)
    if i < len(s):
        rest = s[i:]
        if rest.lstrip().startswith('"'):
            msg = (
                f"unexpected text after the description: {_excerpt(rest)}; "
                "put one entry per line (was a line break lost, or is there a stray double quote "
                'inside the description? write \\" for a quote inside the text)'
            )
        else:
            msg = (
                f"unexpected text after the description: {_excerpt(rest)}; the description must end "
                'with the closing double quote (write \\" for a quote inside the text)'
            )
        raise _BadLine(msg)
    return keyword, description


def _split_lines(text: str) -> list[str]:
    lines = _LINE_SPLIT.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # the file ends with a newline
    return lines


def _parse_lines(lines: list[tuple[int, str]], source: str, pre_problems: list[LineProblem]) -> Ontology:
    entries: list[OntologyEntry] = []
    problems: list[LineProblem] = list(pre_problems)
    first_seen: dict[str, OntologyEntry] = {}
    first_folded: dict[str, OntologyEntry] = {}

    for lineno, raw in lines:
        s = raw.strip(" \t\f\v\u00a0\ufeff\r\n")
        if not s or s.startswith("#") or s in ("{", "}"):
            continue

        def problem(message: str, severity: str = "error", _n=lineno, _raw=raw) -> None:
            problems.append(LineProblem(source, _n, _raw.rstrip("\r\n"), message, severity))

        try:
            keyword, description = _parse_line(s)
        except _BadLine as bad:
            problem(bad.message, bad.severity)
            continue

        keyword = unicodedata.normalize("NFC", keyword.strip())
        description = unicodedata.normalize("NFC", description.strip())
        if not keyword:
            problem(f"empty keyword: write the keyword between the first pair of quotes, e.g. {EXAMPLE_LINE}")
            continue
        if "\n" in keyword or "\r" in keyword:
            problem("the keyword contains a line break (\\n); keywords must fit on one line")
            continue
        first = first_seen.get(keyword)
        if first is not None:
            problem(
                f"duplicate keyword {keyword!r}: already defined on line {first.line}; "
                f"this line is ignored (the first definition is kept): remove one of the two lines"
            )
            continue
        folded = first_folded.get(keyword.casefold())
        if folded is not None:
            problem(
                f"keyword {keyword!r} differs only in upper/lower case from {folded.keyword!r} on line "
                f"{folded.line}; both are kept, but searches that ignore case will find line "
                f"{folded.line}: merge them or rename one",
                "warning",
            )
        if not description:
            problem(
                f"empty description for keyword {keyword!r}: the keyword is kept, but describe it "
                'between the second pair of quotes (e.g. "Église": "photographie d\'une église") '
                "so that it can be searched by meaning",
                "warning",
            )
        entry = OntologyEntry(keyword, description, lineno)
        entries.append(entry)
        first_seen[keyword] = entry
        first_folded.setdefault(keyword.casefold(), entry)

    problems.sort(key=lambda p: p.line)
    return Ontology(entries=entries, problems=problems, source=source)


def parse_ontology(text: str, source: str = "<text>") -> Ontology:
    """Parse ontology text (already decoded); never raises for bad lines."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return _parse_lines(list(enumerate(_split_lines(text), start=1)), source, [])


def _decode_lines(data: bytes, source: str) -> tuple[list[tuple[int, str]], list[LineProblem]]:
    """Split bytes into numbered lines, decoding each as UTF-8; bad lines become problems."""
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):  # "Unicode" as saved by Windows Notepad
            text = data[len(bom) :].decode(codec, errors="replace")
            lines = list(enumerate(_split_lines(text), start=1))
            return lines, []
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    raw_lines = re.split(rb"\r\n|\r|\n", data)
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines: list[tuple[int, str]] = []
    problems: list[LineProblem] = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            lines.append((lineno, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1]
            shown = raw.decode("utf-8", errors="replace")
            problems.append(
                LineProblem(
                    source,
                    lineno,
                    shown,
                    f"this line is not valid UTF-8 (byte 0x{bad.hex().upper()} at byte {exc.start + 1}); "
                    "the file was probably saved as Latin-1/Windows-1252: save it again with the "
                    "UTF-8 encoding (in Notepad: File > Save as > Encoding: UTF-8)",
                )
            )
    return lines, problems


def load_ontology(path: str | os.PathLike) -> Ontology:
    """Read and parse an ontology file. Never raises for bad content or a missing file."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ontology(
            [],
            [LineProblem(source, 0, "", _missing_message(path))],
            source,
        )
    except IsADirectoryError:
        return Ontology([], [LineProblem(source, 0, "", "this is a folder, not an ontology file")], source)
    except OSError as exc:
        return Ontology(
            [], [LineProblem(source, 0, "", f"cannot read the ontology file: {exc.strerror or exc}")], source
        )
    lines, problems = _decode_lines(data, source)
    return _parse_lines(lines, source, problems)


def _missing_message(path: Path) -> str:
    name = path.name
    folder = path.parent
    where = f"{folder}{os.sep}{name}"
    msg = f"ontology file not found: it should be {where}"
    if name.endswith("_ontology.txt"):
        msg += f" (the project folder's name followed by _ontology.txt, inside the {folder.name}/ folder)"
    return msg


def ontology_to_csv(ontology: Ontology, fp: IO) -> None:
    """Write ``keyword,description,line`` rows (with a header) to a text or binary file (UTF-8)."""
    wrapper = None
    if isinstance(fp, io.RawIOBase | io.BufferedIOBase) or "b" in getattr(fp, "mode", ""):
        wrapper = io.TextIOWrapper(fp, encoding="utf-8", newline="")
        out = wrapper
    else:
        out = fp
    writer = csv.writer(out)
    writer.writerow(["keyword", "description", "line"])
    for e in ontology.entries:
        writer.writerow([e.keyword, e.description, e.line])
    if wrapper is not None:
        wrapper.flush()
        wrapper.detach()  # leave the caller's binary file open


class OntologyCache:
    """Parsed ontologies keyed by path; a file is parsed again when its mtime/size/inode change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[tuple | None, Ontology]] = {}

    @staticmethod
    def _signature(path: Path) -> tuple | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)

    def get(self, path: str | os.PathLike) -> Ontology:
        p = Path(path)
        key = os.path.abspath(p)
        with self._lock:
            sig = self._signature(p)
            cached = self._items.get(key)
            if cached is not None and sig is not None and cached[0] == sig:
                return cached[1]
            ontology = load_ontology(p)
            # stat again: if the file changed while being read, do not trust the old signature
            after = self._signature(p)
            self._items[key] = (sig if sig == after else None, ontology)
            return ontology

    def invalidate(self, path: str | os.PathLike | None = None) -> None:
        with self._lock:
            if path is None:
                self._items.clear()
            else:
                self._items.pop(os.path.abspath(Path(path)), None)
