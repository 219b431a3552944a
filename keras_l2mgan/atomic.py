"""Write a whole directory or not at all, and never replace a directory we did not write.

``atomic_directory(target, kind, our_names)`` builds the new contents in a hidden temp dir beside
``target`` and swaps it in. Three promises:

- **Nothing foreign is destroyed.** ``target`` is replaced only when it is missing, empty, or
  holds nothing but the names this kind of directory is made of (a classifier dir holds
  ``classifier.json`` and ``classifier.keras``; a user's ``thesis.txt`` beside them makes it
  foreign). Otherwise ``ForeignDirectoryError``, before anything is touched.
- **A loadable copy at every instant.** On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``
  call: readers see the old directory or the new one, never neither. Elsewhere two renames.
  Files and directories are fsynced before the swap, the parent after it.
- **No litter, normal permissions.** Temp dirs carry their writer's pid; ones left by a dead
  process (a kill -9) are removed by the next writer. The new directory honours the umask
  (``mkdtemp`` alone would make it private, unreadable to a server running as another user).

Single files have the same promise, and this is the one place that writes them:
``write_file_atomic(path, data)`` (text, bytes, or a function writing to a binary handle) goes
through a uniquely named temp file beside ``path`` (two writers never collide), fsynced, then
``os.replace``. ``stage_file`` + ``publish`` split the two halves, for outputs renamed into
place together once all are ready (``photo.StagedOutputs``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class ForeignDirectoryError(ValueError):
    """The output directory holds files this program did not write: refuse to replace it."""


def check_replaceable(target: str | Path, kind: str, our_names: Collection[str]) -> None:
    """Raise ForeignDirectoryError unless `target` is missing, empty or only holds our_names."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ForeignDirectoryError(
            f"{target} exists and is not a directory; pick a new or empty directory for the "
            f"{kind}")
    foreign = sorted(name for name in os.listdir(target) if name not in our_names)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise ForeignDirectoryError(
            f"{target} is not empty and not {_article(kind)} {kind} (it holds {shown}); "
            "refusing to replace it: pick a new or empty directory")


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (directories: best effort, not every OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(directory) / name)
        fsync_path(directory)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temp_dirs(target: Path) -> None:
    """Remove `.NAME.tmp-PID-*` / `.NAME.old-PID-*` beside target left by dead processes."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)-")
    if not target.parent.is_dir():
        return
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the OS cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (38, 22, 95):  # ENOSYS, EINVAL (filesystem lacks it), EOPNOTSUPP
        return False
    raise OSError(error, os.strerror(error), str(b))


@contextlib.contextmanager
def atomic_directory(target: str | Path, kind: str, our_names: Collection[str]
                     ) -> Iterator[Path]:
    """Yield a temp dir beside `target`; on success it replaces `target`, on error it is removed.

    `kind` names the directory in errors ("classifier directory"); `our_names` are the entries
    such a directory is made of. The temp dir's name starts with a dot, so readers that scan
    the parent (TF Serving looks for numeric version dirs) never see a half-written directory.
    """
    target = Path(target)
    check_replaceable(target, kind, our_names)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        fsync_tree(tmp)
        check_replaceable(target, kind, our_names)  # again: it may have changed meanwhile
        if target.exists():
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old contents
            else:
                old = target.with_name(f".{target.name}.old-{os.getpid()}-{tmp.name[-8:]}")
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


Data = str | bytes | Callable[[BinaryIO], object]


def stage_file(path: str | Path, data: Data) -> Path:
    """Write `data` to a new, uniquely named hidden file beside `path` and return its name.

    `data` is text, bytes, or a function that writes to a binary file handle (a PNG encoder,
    np.savez): large outputs never need a second copy in memory. The file is fsynced and gets
    the umask's permissions, as a plain open() would give it (mkstemp makes it private).
    `publish` renames it into place; until then readers of `path` see the old file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def publish(staged: str | Path, path: str | Path) -> Path:
    """Rename a file from `stage_file` onto `path` (atomic), then fsync the directory."""
    path = Path(path)
    try:
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def write_file_atomic(path: str | Path, data: Data) -> Path:
    """Write a file whole or not at all: a unique temp file beside it, fsynced, then renamed.

    Unique temp names let two writers of one path race safely (the last rename wins whole).
    `data` as in `stage_file`: text, bytes or a function writing to a binary handle.
    """
    return publish(stage_file(path, data), path)
