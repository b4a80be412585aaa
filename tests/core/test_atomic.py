"""The one atomic writer: a finished write replaces the file, a failed one leaves it as it was and
no temporary file behind."""

import json
import os
import threading

import pytest

from vitrine.core.atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_writes_bytes_text_and_json(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.csv", "x,y\r\n1,2\n")
    atomic_write_json(tmp_path / "c.json", {"name": "café", "path": tmp_path})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.csv").read_bytes() == b"x,y\r\n1,2\n"  # newlines as given, UTF-8
    data = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert data == {"name": "café", "path": str(tmp_path)}
    assert "café" in (tmp_path / "c.json").read_text(encoding="utf-8")  # not \u escaped
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    atomic_write_json(target, {"state": "done"})
    with pytest.raises(TypeError):
        with atomic_open(target, "w") as fh:
            fh.write('{"state": "runn')
            raise TypeError("boom")
    assert json.loads(target.read_text()) == {"state": "done"}
    assert _leftovers(tmp_path) == []


def test_atomic_path_for_libraries_that_write_by_name(tmp_path):
    target = tmp_path / "model.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.bin.")
        tmp.write_bytes(b"weights")
        assert not target.exists()  # not visible before the block ends
    assert target.read_bytes() == b"weights"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"weights"
    assert _leftovers(tmp_path) == []


def test_threads_writing_the_same_file_never_collide(tmp_path):
    target = tmp_path / "shared.json"
    errors = []

    def write(i):
        try:
            for _ in range(20):
                atomic_write_json(target, {"writer": i})
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text())["writer"] in range(4)
    assert _leftovers(tmp_path) == []


def test_refuses_append_and_read_modes(tmp_path):
    for mode in ("a", "rb", "r+"):
        with pytest.raises(ValueError, match="whole new file"), atomic_open(tmp_path / "x", mode):
            pass
    assert os.listdir(tmp_path) == []
