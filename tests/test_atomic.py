"""atomic_directory: a directory is replaced whole or not at all, and only if it is ours."""

import os
import subprocess
import sys

import pytest

from keras_l2mgan.atomic import ForeignDirectoryError, atomic_directory, check_replaceable

pytestmark = pytest.mark.backend_independent  # plain Python

OURS = ("a.txt", "b.txt")


def _write(target, text, kind="test dir"):
    with atomic_directory(target, kind, OURS) as tmp:
        (tmp / "a.txt").write_text(text)


def test_success_replaces_the_directory_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model"
    for version in ("old", "new"):
        _write(target, version)
    assert (target / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_failure_keeps_the_old_directory_and_removes_the_temp(tmp_path):
    target = tmp_path / "model"
    _write(target, "good")
    with pytest.raises(RuntimeError), atomic_directory(target, "test dir", OURS) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_directory_holding_foreign_files_is_never_replaced(tmp_path):
    """The `l2m classifier train -o ~` case: a user's folder survives untouched."""
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "thesis.txt").write_text("years of work")
    (home / "a.txt").write_text("looks like ours")
    with pytest.raises(ForeignDirectoryError, match="not empty and not a test dir.*sub, thesis"):
        _write(home, "new")
    assert (home / "thesis.txt").read_text() == "years of work"
    assert (home / "a.txt").read_text() == "looks like ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # no temp dir left either


def test_empty_directory_and_file_targets(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _write(empty, "x")
    assert (empty / "a.txt").read_text() == "x"
    afile = tmp_path / "file"
    afile.write_text("keep")
    with pytest.raises(ForeignDirectoryError, match="not a directory"):
        check_replaceable(afile, "test dir", OURS)
    assert afile.read_text() == "keep"


def test_new_directory_honours_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        _write(tmp_path / "shared", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755


def test_stale_temp_dirs_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".model.tmp-{dead}-abc123"
    stale.mkdir()
    (stale / "a.txt").write_text("half-written by a killed run")
    live = tmp_path / f".model.tmp-{os.getppid()}-xyz"  # a live process's: left alone
    live.mkdir()
    _write(tmp_path / "model", "x")
    assert not stale.exists()
    assert live.exists()


def test_replacement_keeps_a_loadable_copy_at_every_instant(tmp_path):
    """A reader polling the target while it is replaced 30 times never finds it missing."""
    import threading

    target = tmp_path / "model"
    _write(target, "0")
    missing, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                (target / "a.txt").read_text()
            except FileNotFoundError:
                missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            _write(target, str(i))
    finally:
        stop.set()
        thread.join()
    assert not missing
    assert (target / "a.txt").read_text() == "29"


def test_a_file_is_written_whole_from_text_bytes_or_a_writer(tmp_path):
    from keras_l2mgan.atomic import write_file_atomic

    target = tmp_path / "out.bin"
    write_file_atomic(target, "text")
    assert target.read_text() == "text"
    write_file_atomic(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    write_file_atomic(target, lambda handle: handle.write(b"streamed"))
    assert target.read_bytes() == b"streamed"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    from keras_l2mgan.atomic import write_file_atomic

    target = tmp_path / "out.txt"
    target.write_text("good")

    def half(handle):
        handle.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_file_atomic(target, half)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_staged_files_have_unique_names_and_ordinary_permissions(tmp_path):
    from keras_l2mgan.atomic import publish, stage_file

    target = tmp_path / "out.txt"
    previous = os.umask(0o022)
    try:
        first, second = stage_file(target, "one"), stage_file(target, "two")
    finally:
        os.umask(previous)
    assert first != second and first.parent == second.parent == tmp_path
    assert first.stat().st_mode & 0o777 == 0o644
    assert not target.exists()  # nothing is visible under the name until it is published
    publish(second, target)
    publish(first, target)  # the last rename wins, whole
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
