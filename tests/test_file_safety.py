"""No command destroys files it did not write; one `l2m train` per run dir."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT, invoke_l2m, one_error_line

pytestmark = pytest.mark.backend_independent  # file handling, the same on every backend


_invoke, _error_line = invoke_l2m, one_error_line


def _snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def _users_folder(root):
    (root / "sub").mkdir(parents=True)
    (root / "thesis.txt").write_text("years of work")
    (root / "sub" / "notes.md").write_text("more")
    return _snapshot(root)


def test_classifier_train_refuses_a_users_folder_before_training(tmp_path):
    folder = tmp_path / "home"
    before = _users_folder(folder)
    started = time.monotonic()
    result = _invoke("classifier", "train", "-o", folder, "--steps", "1")
    assert result.exit_code == 2
    assert "not empty and not a classifier directory" in _error_line(result)
    assert _snapshot(folder) == before
    assert time.monotonic() - started < 60  # refused up front, not after training


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path):
    run_dir = tmp_path / "mine"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "README.txt").write_text("my notes")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "ckpt-00000002.npz").write_bytes(b"a user's file")
    before = _snapshot(run_dir)
    result = _invoke("train", "--run-dir", run_dir, "--steps", "1", "--preset", "tiny_32")
    assert result.exit_code == 2
    assert "is not empty and not a run" in _error_line(result)
    assert _snapshot(run_dir) == before


def test_export_overwrite_refuses_a_version_dir_with_foreign_files(tmp_path):
    from keras_l2mgan.atomic import ForeignDirectoryError
    from keras_l2mgan.bundle import BUNDLE_FILES
    from keras_l2mgan.export import export_saved_model

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in BUNDLE_FILES:
        (bundle / name).write_text("{}")
    version = tmp_path / "saved" / "faces" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"x")
    (version / "diary.txt").write_text("mine")
    with pytest.raises(ForeignDirectoryError, match="diary.txt"):
        export_saved_model(bundle, "faces", 1, tmp_path / "saved", overwrite=True)
    assert (version / "diary.txt").read_text() == "mine"


HOLD_LOCK = """
import sys, time
from keras_l2mgan.training.run_lock import RunDirLock
lock = RunDirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_a_run_dir_in_use_is_refused_naming_the_owner(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _invoke("train", "--run-dir", run_dir, "--steps", "1", "--preset", "tiny_32")
        assert result.exit_code == 2
        line = _error_line(result)
        assert f"in use by process {holder.pid}" in line
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    # The holder died by SIGKILL: its lock is gone with it and the next run takes it over.
    from keras_l2mgan.training.run_lock import RunDirLock

    with RunDirLock(run_dir) as lock:
        assert lock.path.is_file()
    assert not (run_dir / ".lock").exists()


def test_eval_refuses_a_users_folder_as_its_output_before_evaluating(tmp_path):
    folder = tmp_path / "report"
    before = _users_folder(folder)
    (folder / "eval.md").write_text("my own notes, not an eval report")
    before = _snapshot(folder)
    result = _invoke("eval", tmp_path, "-o", folder)
    assert result.exit_code == 2
    assert "not empty and not an eval results directory" in _error_line(result)
    assert _snapshot(folder) == before


def test_a_planted_lock_symlink_never_truncates_its_target(tmp_path):
    from keras_l2mgan.training.run_lock import RunDirInUseError, RunDirLock

    precious = tmp_path / "bashrc"
    precious.write_text("export PATH=...")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").symlink_to(precious)
    with pytest.raises(RunDirInUseError, match="cannot open its lock file"):
        RunDirLock(run_dir).acquire()
    assert precious.read_text() == "export PATH=..."
