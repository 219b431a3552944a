"""One `l2m train` per run directory: an exclusive lock on RUN_DIR/.lock for the whole run.

Two runs writing one directory would interleave checkpoints and options, and the loser's work
would vanish without a word. The lock is an ``flock`` on ``RUN_DIR/.lock``: the kernel drops it
when its process dies (even by kill -9), so a lock left by a dead run is simply taken over. The
file holds the owner's pid, host and command, to name it when a second run is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_FILE = ".lock"


class RunDirInUseError(ValueError):
    """Another live process holds the run directory."""


class RunDirLock:
    """Hold RUN_DIR/.lock; `release()` (or leaving the `with` block) lets it go."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.created_dir = False
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        if not self.run_dir.exists():
            self.run_dir.mkdir(parents=True)
            self.created_dir = True
        while True:
            try:  # O_NOFOLLOW: a planted .lock symlink must not make us truncate its target
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as error:
                raise RunDirInUseError(f"run dir {self.run_dir}: cannot open its lock file "
                                       f"{self.path} ({error.strerror}); remove it if it is "
                                       "not a plain file") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _describe_owner(fd)
                os.close(fd)
                raise RunDirInUseError(
                    f"run dir {self.run_dir} is in use by {owner}; wait for it to finish, stop "
                    "it, or choose another --run-dir") from None
            # The file we locked must still be the one at the path (a releasing owner may have
            # unlinked it between our open and our lock); if not, try again on the new file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # under the lock; later lockers re-check the inode
        os.close(self._fd)
        self._fd = None
        if self.created_dir:
            try:  # a run that failed before writing anything leaves no empty dir behind
                self.run_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe_owner(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        owner = {}
    if not owner.get("pid"):
        return "another process"
    where = f" on {owner['host']}" if owner.get("host") else ""
    command = f" ({owner['command']})" if owner.get("command") else ""
    return f"process {owner['pid']}{where}{command}"
