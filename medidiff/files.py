"""Files that are whole or absent: the one atomic writer, folder swaps, folder locks, SIGTERM cleanup.

Guarantees, and how each is kept:

* A file under its final name is complete: it is written to a unique temporary name in the same
  folder (``mkstemp``: two processes never share one) and renamed (``os.replace`` is atomic on
  one file system).
* Files get the mode any other file would get from the user's umask (0644 under the usual
  022): ``mkstemp`` creates 0600, which a cluster group cannot read, so the mode is set before
  the rename.
* A folder replaced as a whole (a latent cache, an exported model) is built beside it and swapped
  in only once complete (:func:`staged_dir`): a failed run leaves the previous folder as it was.
* Temporary files and folders are removed when the process ends by an exception, Ctrl-C or
  SIGTERM (:func:`terminate_on_sigterm` turns SIGTERM into :class:`Terminated`, a ``SystemExit``,
  so every ``finally`` runs).
* :func:`folder_lock` holds an ``flock`` on ``FOLDER/.medidiff.lock``: two writers of one output
  folder refuse rather than interleave. The kernel drops the lock when its holder dies, so a
  killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from medidiff.errors import MedidiffError


def file_sha256(path: str | Path) -> str:
    """64 hex digits of sha256 over the file's bytes, read in 1 MiB blocks (the one file hash:
    model weights, label maps and manifests in provenance are cut to 16 digits where recorded)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

__all__ = ["Terminated", "file_sha256", "file_mode", "atomic_path", "write_text_atomic", "staged_dir", "folder_lock",
           "terminate_on_sigterm", "TMP_PREFIX"]

TMP_PREFIX = ".tmp_"


class Terminated(SystemExit):
    """SIGTERM as an exception: ``finally`` blocks (temp-file cleanup) run; exit status 143."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def terminate_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (the CLI calls this once).

    Commands that install their own SIGTERM handler (training stops at a step boundary) replace
    this one while they run."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)


def _umask() -> int:
    try:  # Linux states it without the set-and-restore race below
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 minus the umask."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on a clean exit it becomes ``path``.

    Write the file to the yielded path (any writer: nibabel, safetensors, ``open``). On an
    exception (SIGTERM included, see :func:`terminate_on_sigterm`) the temporary file is removed
    and ``path`` is untouched. The suffix of ``path`` is kept (``.nii.gz`` writers look at it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`; ``fsync`` before the rename for
    files that mark something finished (a power cut must not leave an empty marker)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on a clean exit it replaces ``final``.

    The previous ``final`` (if any) is moved aside, the new folder renamed in, and only then the
    old one deleted; on an exception the temporary folder is deleted and ``final`` is untouched.
    Between the two renames ``final`` is briefly absent (POSIX cannot swap two folders in one
    step); a crash exactly there leaves the old folder as ``.tmp_old_<name>_*`` beside it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise MedidiffError(f"{final}: exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}_", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old_{final.name}_", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for one writer at a time.

    ``what`` names the writer in the refusal, e.g. "`medidiff generate` --out"."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".medidiff.lock"
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise MedidiffError(f"{folder}: in use by {holder}; wait for it to finish or choose another "
                                f"{what}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()  # closing drops the flock

