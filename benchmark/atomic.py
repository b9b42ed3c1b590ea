"""Safe files: atomic writes, file names from user text, and a lock per run across processes.

Atomic writes mean readers see the old file or the whole new one, never a partial write. A run's
name becomes one safe, bounded file-name component. A run lock is an advisory ``flock`` on a
file next to the run's record, so two processes never train the same run at once; the kernel
releases it when its process dies, even by SIGKILL, so a crash leaves no stale lock.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MAX_STEM_BYTES = 80  # file-name limits are 255 bytes; the hash, suffixes and temp names fit


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode())


def safe_file_stem(name: str) -> str:
    """Return `name` as one file-name component of at most `MAX_STEM_BYTES` UTF-8 bytes.

    Characters other than letters, digits and ``.-_+=@,`` become ``_``, leading dots and dashes
    are dropped (no ``..``, no hidden files, no option-like names), and a longer name keeps its
    start plus 8 hex digits of its sha256, so distinct long names keep distinct files.
    """
    stem = re.sub(r"[^\w.+=@,-]", "_", name).lstrip(".-") or "run"
    if len(stem.encode()) <= MAX_STEM_BYTES:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    start = stem.encode()[: MAX_STEM_BYTES - 9].decode(errors="ignore")
    return f"{start}-{digest}"


@contextlib.contextmanager
def run_lock(path: Path, *, describe: str = "") -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created, then removed), waiting if another holds it.

    Yields whether the lock was free at once: False means another process held it and this one
    waited for it to finish, so the caller should look again for that process's result.

    Args:
        path: The lock file, next to what it protects (e.g. ``<record>.lock``).
        describe: What is locked, for the message logged while waiting.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another process running %s (lock %s)", describe, path)
            waited = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        # NOTE: the previous holder removes the file before unlocking; a lock on a removed file
        # guards nothing, so take the file at the path again.
        if _same_file(handle, path):
            break
        os.close(handle)
    try:
        yield not waited
    finally:
        path.unlink(missing_ok=True)
        os.close(handle)  # closing releases the flock


def _same_file(handle: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.stat(path))
    except FileNotFoundError:
        return False


def move_aside(path: Path) -> Path:
    """Rename a bad file or folder to ``<name>.corrupt-<UTC time>`` beside it; return the new path.

    Nothing is deleted, so the user can inspect it; the original path is free for a fresh file.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{suffix}")
    os.replace(path, target)
    return target


def check_writable_folder(path: Path, flag: str) -> None:
    """Create `path` if needed and check that a file can be written in it, before any work.

    Raises:
        ValueError: naming `flag` (e.g. ``--results``), the folder and why it is unusable.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".vaebench-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"Expected `{flag}` to be a folder vaebench can write, but {path} is not "
            f"({reason}); choose another folder."
        ) from None
