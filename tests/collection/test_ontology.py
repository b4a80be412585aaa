from __future__ import annotations

import csv
import io
import json
import os
import threading
import unicodedata

import pytest

from vitrine.collection.ontology import (
    LineProblem,
    OntologyCache,
    load_ontology,
    ontology_to_csv,
    parse_ontology,
)
from vitrine.core.errors import NotFound, OntologyError

GOOD = """\
# Ontologie du fonds paroissial
{
"Église": "photographie d'une église romane",
  "Calvaire"  :\t"croix monumentale en pierre",
"Vitrail": "verrière colorée, dite \\"rose\\"",

"Cœur": "chœur de l'église (partie orientale)",
"Ex-voto": "tableau votif — « merci »",
}
"""


def test_good_file_with_accents_comments_braces_and_commas():
    ont = parse_ontology(GOOD, source="fonds_ontology.txt")
    assert ont.problems == []
    assert ont.keywords == ["Église", "Calvaire", "Vitrail", "Cœur", "Ex-voto"]
    assert ont.get("Église").description == "photographie d'une église romane"
    assert ont.get("Église").line == 3
    assert ont.get("Calvaire").line == 4
    assert ont.get("Vitrail").description == 'verrière colorée, dite "rose"'
    assert ont.get("Ex-voto").description == "tableau votif — « merci »"
    assert len(ont) == 5
    assert ont.ok


BAD_LINES = [
    ('"Église": "photographie d\'une église"', None),  # 1 good
    ('Calvaire: "croix"', "not enclosed in double quotes"),  # 2 keyword not quoted
    ('"Vitrail" "verrière"', "missing colon"),  # 3
    ('"": "rien"', "empty keyword"),  # 4
    ('"Autel": "table" en pierre', "unexpected text after the description"),  # 5
    ("\u201cClocher\u201d: \u201ctour\u201d", "curly"),  # 6 smart quotes
    ('"Nef": pas de guillemets', "description is not enclosed in double quotes"),  # 7
    ('"Porche": "entrée couverte', "no closing double quote"),  # 8
    ('"Église": "doublon"', "already defined on line 1"),  # 9 duplicate
    ("", None),  # 10 blank
    ('"Crypte":', "description is missing"),  # 11
    ("Baptistère", "not an entry"),  # 12
    ("'Abside': 'chevet'", "single quotes"),  # 13
    ('"Chapelle": "petite église"', None),  # 14 good
    ('"Transept": "bras \\q"', "invalid backslash escape"),  # 15
    ('"Tour: "clocher"', "missing its closing double quote"),  # 16
    ('"Cloître": "galerie" "couverte"', "one entry per line"),  # 17
    ('"Retable" = "panneau"', "expected a colon"),  # 18
    ('"Chœur": "partie orientale",', None),  # 19 good, trailing comma
]


def test_every_bad_line_is_reported_with_its_number_and_good_lines_are_kept():
    text = "\n".join(line for line, _ in BAD_LINES) + "\n"
    ont = parse_ontology(text, source="p_ontology.txt")
    assert ont.keywords == ["Église", "Chapelle", "Chœur"]
    assert [e.line for e in ont.entries] == [1, 14, 19]
    by_line = {p.line: p for p in ont.problems}
    expected = {i: msg for i, (_, msg) in enumerate(BAD_LINES, start=1) if msg}
    assert sorted(by_line) == sorted(expected)
    for line, fragment in expected.items():
        problem = by_line[line]
        assert fragment in problem.message, (line, problem.message)
        assert problem.text == BAD_LINES[line - 1][0]
        assert problem.file == "p_ontology.txt"
        assert problem.severity == "error"
        assert str(problem).startswith(f"p_ontology.txt:{line}: ")
    assert "Word" in by_line[6].message
    assert not ont.ok
    with pytest.raises(OntologyError) as info:
        ont.raise_for_errors()
    assert "p_ontology.txt:6:" in info.value.message


def test_empty_description_is_a_warning_and_the_keyword_is_kept():
    ont = parse_ontology('"Ossuaire": ""\n"Parvis": "  "\n')
    assert ont.keywords == ["Ossuaire", "Parvis"]
    assert [p.line for p in ont.problems] == [1, 2]
    assert all(p.severity == "warning" and "empty description" in p.message for p in ont.problems)
    assert ont.ok
    ont.raise_for_errors()  # warnings do not raise


def test_duplicates_keep_the_first_and_case_variants_warn():
    ont = parse_ontology('"Porche": "un"\n"Porche": "deux"\n"porche": "trois"\n')
    assert ont.get("Porche").description == "un"
    assert ont.get("porche").description == "trois"  # exact match wins over case-insensitive
    dup, case = ont.problems
    assert dup.line == 2 and "duplicate keyword" in dup.message and "line 1" in dup.message
    assert case.line == 3 and case.severity == "warning" and "line 1" in case.message


def test_get_is_exact_then_case_insensitive_and_unicode_normalised():
    ont = parse_ontology('"Église": "x"\n"Calvaire": "y"\n')
    assert ont.get("ÉGLISE").keyword == "Église"
    assert ont.get("église").keyword == "Église"
    decomposed = unicodedata.normalize("NFD", "Église")
    assert decomposed != "Église"
    assert ont.get(decomposed).keyword == "Église"
    assert "calvaire" in ont and "Nef" not in ont
    with pytest.raises(NotFound) as info:
        ont.get("Nef")
    assert info.value.status == 404
    assert "Église" in info.value.hint and "Calvaire" in info.value.hint


def test_decomposed_keywords_in_the_file_are_normalised():
    ont = parse_ontology(unicodedata.normalize("NFD", '"Église": "été"\n'))
    assert ont.keywords == ["Église"]
    assert ont.entries[0].description == "été"


def test_crlf_lone_cr_tabs_and_bom():
    ont = parse_ontology('\ufeff"A": "a"\r\n\t"B"\t:\t"b"\t,\r\n\r\n"C": "c"\r"D": "d"')
    assert ont.problems == []
    assert [(e.keyword, e.line) for e in ont.entries] == [("A", 1), ("B", 2), ("C", 4), ("D", 5)]


def test_load_strips_bom_and_handles_crlf(tmp_path):
    path = tmp_path / "x_ontology.txt"
    path.write_bytes(b"\xef\xbb\xbf" + '"Église": "romane"\r\n"Nef": "vaisseau"\r\n'.encode())
    ont = load_ontology(path)
    assert ont.problems == []
    assert ont.keywords == ["Église", "Nef"]
    assert ont.source == str(path)


def test_invalid_utf8_line_is_reported_and_other_lines_parsed(tmp_path):
    path = tmp_path / "x_ontology.txt"
    path.write_bytes(
        '"Église": "romane"\n'.encode()
        + '"Clocher": "tour de l\'église"\n'.encode("cp1252")  # saved as Windows-1252
        + b'"Nef": "vaisseau"\n'
    )
    ont = load_ontology(path)
    assert ont.keywords == ["Église", "Nef"]
    [problem] = ont.problems
    assert problem.line == 2
    assert "UTF-8" in problem.message and "0xE9" in problem.message
    assert "Clocher" in problem.text


def test_utf16_file_from_notepad(tmp_path):
    path = tmp_path / "x_ontology.txt"
    path.write_bytes('"Église": "romane"\r\n'.encode("utf-16"))
    assert load_ontology(path).keywords == ["Église"]


def test_missing_file_is_one_problem_saying_where(tmp_path):
    path = tmp_path / "proj" / "ontology" / "proj_ontology.txt"
    ont = load_ontology(path)
    assert len(ont) == 0
    [problem] = ont.problems
    assert problem.line == 0
    assert "not found" in problem.message and "proj_ontology.txt" in problem.message
    assert str(path.parent) in problem.message


def test_to_dict_is_json_and_csv_round_trip(tmp_path):
    ont = parse_ontology(GOOD + "oops\n", source="s")
    data = json.loads(json.dumps(ont.to_dict()))
    assert data["source"] == "s"
    assert data["entries"][0] == {
        "keyword": "Église",
        "description": "photographie d'une église romane",
        "line": 3,
    }
    assert data["problems"][0]["line"] == 10

    text = io.StringIO(newline="")
    ontology_to_csv(ont, text)
    rows = list(csv.reader(io.StringIO(text.getvalue())))
    assert rows[0] == ["keyword", "description", "line"]
    assert rows[1] == ["Église", "photographie d'une église romane", "3"]
    assert rows[3][1] == 'verrière colorée, dite "rose"'

    with open(tmp_path / "o.csv", "wb") as fh:
        ontology_to_csv(ont, fh)
        assert not fh.closed
    with open(tmp_path / "o.csv", encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh)) == rows


def test_line_problem_str():
    assert str(LineProblem("f.txt", 3, "x", "bad")) == "f.txt:3: bad"


def _write(path, text, mtime_ns):
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_cache_reparses_when_the_file_changes(tmp_path):
    path = tmp_path / "p_ontology.txt"
    _write(path, '"A": "a"\n', 1_000_000_000_000_000_000)
    cache = OntologyCache()
    first = cache.get(path)
    assert first.keywords == ["A"]
    assert cache.get(path) is first  # unchanged: not parsed again
    _write(path, '"B": "b"\n', 1_000_000_000_000_000_000)  # same size, same mtime: inode/ctime
    _write(path, '"B": "b"\n', 1_000_000_001_000_000_000)
    assert cache.get(path).keywords == ["B"]
    path.unlink()
    missing = cache.get(path)
    assert missing.keywords == [] and missing.problems[0].line == 0
    _write(path, '"C": "c"\n"D": "d"\n', 1_000_000_002_000_000_000)
    assert cache.get(path).keywords == ["C", "D"]


def test_cache_is_thread_safe(tmp_path):
    path = tmp_path / "p_ontology.txt"
    _write(path, '"A": "a"\n', 1_000_000_000_000_000_000)
    cache = OntologyCache()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                ont = cache.get(path)
                assert ont.keywords in (["A"], ["A", "B"]), ont.keywords
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for i in range(20):
        text = '"A": "a"\n"B": "b"\n' if i % 2 else '"A": "a"\n'
        tmp = tmp_path / "tmp.txt"
        _write(tmp, text, 1_000_000_000_000_000_000 + i * 1_000_000_000)
        os.replace(tmp, path)  # atomic, like editors do
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert cache.get(path).keywords == ["A", "B"]
