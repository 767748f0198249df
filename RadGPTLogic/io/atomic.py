"""All-or-nothing output: the one way this package writes files.

Two primitives:

* :func:`atomic_write_file`: one file, written beside its target and renamed over it.
* :func:`publish`: a whole output folder, replaced in one go.  The new state of the
  folder (new files, plus every file that stays: the user's own files and the
  tool's earlier outputs that are still valid, hard-linked) is assembled in a
  hidden sibling folder, which then takes the folder's place in one atomic
  exchange (Linux; two renames elsewhere).  Readers see the old folder or the new
  one, never a mix.  A run killed at any step leaves
  hidden leftovers that the next :func:`publish` (or :func:`recover`) into the same
  folder resolves: a completed new folder is rolled forward, a moved-aside old one
  rolled back, and half-written ones deleted.  A lock (a hidden ``.<name>.lock``
  file beside the folder) keeps two writers of one folder from interleaving: the
  second waits.

Every published folder holds a manifest, ``.radgpt-manifest.json``: the files the
tool wrote and their SHA-256.  Files not listed are the user's and are never
deleted; readers (batch resume) use the hashes to check that findings and reports
belong together.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError

log = logging.getLogger("radgpt")

MANIFEST = ".radgpt-manifest.json"

# Called with the name of each step of :func:`publish` (tests kill the process there).
_step_hook = None


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def os_error(path, exc: OSError, doing: str) -> InputError:
    """An OS error (permission, read-only or full disk ...) as the user's one-line error."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    where = exc.filename if getattr(exc, "filename", None) else path
    return InputError(where, f"cannot {doing} ({reason})")


def _encode(content) -> bytes:
    return content if isinstance(content, bytes) else str(content).encode("utf-8")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def atomic_writer(path, *, text: bool = True):
    """Write one file through a file object (UTF-8 text with ``\\n`` kept as is, or bytes)
    so that readers see the old or the new content: the object writes a hidden file
    beside ``path``, which replaces ``path`` when the ``with`` block ends without an
    error and is deleted when it raises.  For files too big to build in memory first
    (a batch summary of 10,000 cases).  An OS error while writing becomes the user's
    one-line :class:`~RadGPTLogic.errors.InputError`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with (open(tmp, "w", encoding="utf-8", newline="") if text else open(tmp, "wb")) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise os_error(path, exc, "write the file") from None
        raise


def atomic_write_file(path, content) -> Path:
    """Write one file (str as UTF-8, or bytes) so that readers see the old or the new content."""
    with atomic_writer(path, text=False) as fh:
        fh.write(_encode(content))
    return Path(path)


# ------------------------------------------------------------------------------ locking

class _FolderLock:
    """An exclusive lock for writing the folder ``out_dir`` (a second writer waits).

    On POSIX systems it is ``flock`` on the parent folder itself, so no lock file is
    left anywhere; writers of sibling folders (batch workers) wait for each other
    only during the short final publish step.  On Windows it is a byte lock on a
    file in the temporary folder named after the parent folder.
    """

    def __init__(self, out_dir: Path):
        self.parent = out_dir.parent
        self._fd = None
        self._fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows
            return self._enter_windows()
        self._fd = os.open(self.parent, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("%s: another run is writing here; waiting for it", self.parent)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def _enter_windows(self):
        import msvcrt
        import tempfile

        key = hashlib.sha256(str(self.parent).lower().encode()).hexdigest()[:16]
        self._fh = open(Path(tempfile.gettempdir()) / f"radgpt-{key}.lock", "a+b")
        while True:
            try:
                self._fh.seek(0)
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_LOCK, 1)
                return self
            except OSError:
                time.sleep(0.2)

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
        if self._fh is not None:
            import msvcrt

            try:
                self._fh.seek(0)
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_UNLCK, 1)
            finally:
                self._fh.close()


# ----------------------------------------------------------------------------- recovery

def _leftovers(out_dir: Path, kind: str) -> list:
    return sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*"))


def _recover_unlocked(out_dir: Path) -> None:
    """Resolve what killed runs left beside ``out_dir`` (caller holds the lock)."""
    for tmp in _leftovers(out_dir, "tmp"):
        shutil.rmtree(tmp, ignore_errors=True)  # never completed
    new = _leftovers(out_dir, "new")
    old = _leftovers(out_dir, "old")
    if not out_dir.exists():
        if new:
            os.rename(new.pop(), out_dir)  # completed, killed between the two renames
        elif old:
            os.rename(old.pop(), out_dir)
    for folder in new + old:
        shutil.rmtree(folder, ignore_errors=True)


def recover(out_dir) -> None:
    """Bring ``out_dir`` back to a whole state after a killed :func:`publish` (takes the lock)."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return
    with _FolderLock(out_dir):
        _recover_unlocked(out_dir)


# ----------------------------------------------------------------------------- manifest

def read_manifest(out_dir) -> dict:
    """``{relative name: sha256}`` of the files the tool wrote into ``out_dir`` ({} if none)."""
    try:
        data = json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))
        files = data.get("files", {})
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_problems(out_dir, names=None) -> list:
    """Files listed in the manifest (or just ``names``) that are missing or differ: ``["report.txt changed"]``."""
    out_dir = Path(out_dir)
    listed = read_manifest(out_dir)
    problems = []
    for name in (names if names is not None else sorted(listed)):
        if name not in listed:
            problems.append(f"{name} not in the output manifest")
            continue
        try:
            digest = sha256_file(out_dir / name)
        except OSError:
            problems.append(f"{name} missing")
            continue
        if digest != listed[name]:
            problems.append(f"{name} changed")
    return problems


# ------------------------------------------------------------------------------ publish

def _check_name(name: str) -> None:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(p in ("..", ".", "") for p in parts) or name == MANIFEST:
        raise ValueError(f"output name {name!r} is not a plain relative path")


def _link_tree(src: Path, dst: Path, skip: set, rel: str = "") -> None:
    """Hard-link (copy where linking fails) every file under ``src`` into ``dst`` except ``skip``."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = f"{rel}{entry.name}"
        if name in skip:
            continue
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            target.mkdir(exist_ok=True)
            _link_tree(Path(entry.path), target, skip, name + "/")
        elif entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target)


def _output_path(out_dir):
    """``(absolute path, path as the user gave it)``; an empty path is an :class:`InputError`."""
    if out_dir is None or not str(out_dir) or str(out_dir) == ".":
        raise InputError(repr(str(out_dir or "")), "empty output path; name an output folder")
    shown = Path(out_dir)
    return Path(os.path.abspath(shown)), shown  # absolute; a link named as the output stays a link


@contextmanager
def staged_folder(out_dir, *, fresh: bool = False):
    """Build the next state of the folder ``out_dir`` in a hidden staging folder, then swap it in.

    Holds the folder's lock throughout (a second writer waits), first resolves what
    killed runs left behind (:func:`recover`), and yields the empty staging folder
    (a sibling of ``out_dir``, same file system).  On normal exit the staging folder
    takes ``out_dir``'s place by renames that no kill can leave half done; on an
    exception it is deleted and ``out_dir`` stays as it was.  With ``fresh``,
    ``out_dir`` must not exist or be empty.  OS errors become one-line
    :class:`InputError` naming the path.
    """
    out_dir, shown = _output_path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(out_dir.parent, exc, "create the output folder") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(shown, "output path exists and is not a folder")
    try:
        with _FolderLock(out_dir):
            _recover_unlocked(out_dir)
            if fresh and out_dir.is_dir() and any(out_dir.iterdir()):
                raise InputError(shown, "output folder exists and is not empty; choose a new folder")
            tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp = out_dir.parent / f".{out_dir.name}.tmp-{tag}"
            tmp.mkdir()  # not mkdtemp: the folder gets the usual permissions (umask), not 0700
            try:
                _step("tmp-created")
                yield tmp
                _swap_in(tmp, out_dir, tag)
                tmp = None
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise os_error(shown, exc, "write the output folder") from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    global _EXCHANGE
    if _EXCHANGE is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _EXCHANGE = (ctypes, libc.renameat2)
        except (OSError, AttributeError):
            _EXCHANGE = False
    if _EXCHANGE is False:
        return False
    ctypes, renameat2 = _EXCHANGE
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system (or kernel) cannot exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


# None: not tried yet; False: unsupported here; else (ctypes module, libc's renameat2).
_EXCHANGE: tuple[Any, Any] | Literal[False] | None = None


def _swap_in(tmp: Path, out_dir: Path, tag: str) -> None:
    """Put the complete staging folder ``tmp`` in the place of ``out_dir``.

    Where the system can exchange two paths atomically (Linux), the new folder and
    the old one trade places in one step and the old one is then deleted: at no
    moment is ``out_dir`` missing or mixed.  Elsewhere the old folder is moved aside
    and the new one renamed into place; a kill between the two renames leaves
    ``out_dir`` missing with the complete new folder beside it, which
    :func:`recover` (run by every writer of that folder, and by batch) rolls forward.
    """
    new = out_dir.parent / f".{out_dir.name}.new-{tag}"
    os.rename(tmp, new)  # the new state is complete: recovery rolls it forward from here
    _step("new-complete")
    if out_dir.exists() and _exchange(new, out_dir):
        _step("exchanged")
        shutil.rmtree(new, ignore_errors=True)  # now holds the old state
        return
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{tag}"
        os.rename(out_dir, old)
        _step("old-moved-aside")
        os.rename(new, out_dir)
        _step("new-in-place")
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, out_dir)
        _step("new-in-place")


def publish(out_dir, files: dict, *, remove=(), fresh: bool = False, owned=()) -> list:
    """Replace the folder ``out_dir`` in one step by its old content updated with ``files``.

    Parameters
    ----------
    out_dir : path
        The output folder; created (with its parents) when missing.
    files : dict
        Relative name (may hold ``/``) -> str (written as UTF-8) or bytes.
    remove : iterable of str
        Relative names of earlier outputs to drop (only files the manifest says the
        tool wrote are ever removed; anything else stays).
    fresh : bool
        ``out_dir`` must not exist or be empty (a new case folder, a new dataset).
    owned : iterable of str
        Names to treat as the tool's own even when no manifest lists them (output
        folders written before manifests existed).

    Returns the paths written (as ``out_dir / name``).  Raises :class:`InputError`
    naming the path for OS errors (permissions, read-only or full disk) and, with
    ``fresh``, for a folder that is not empty; ``out_dir`` is then left as it was.
    """
    for name in files:
        _check_name(name)
    absolute, shown = _output_path(out_dir)
    with staged_folder(out_dir, fresh=fresh) as tmp:
        _fill(tmp, absolute, files, set(remove), set(owned))
    return [shown / name for name in files]


def _fill(tmp: Path, out_dir: Path, files: dict, remove: set, owned: set) -> None:
    """Stage the old folder's files that stay (linked), the new ``files`` and the manifest."""
    old_manifest = read_manifest(out_dir) if out_dir.is_dir() else {}
    owned = set(old_manifest) | owned
    droppable = {n for n in remove if n in owned}
    if out_dir.is_dir():
        _link_tree(out_dir, tmp, set(files) | droppable | {MANIFEST})
    _step("old-files-linked")
    manifest = {n: old_manifest.get(n) or sha256_file(tmp / n)
                for n in owned if n not in droppable and (tmp / n).is_file()}
    for name, content in files.items():
        data = _encode(content)
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        _write_synced(tmp / name, data)
        manifest[name] = hashlib.sha256(data).hexdigest()
        _step(f"wrote {name}")
    _write_synced(tmp / MANIFEST, (json.dumps({"files": dict(sorted(manifest.items()))}, indent=1) + "\n").encode())
    _step("manifest-written")


def write_files_atomically(out_dir, files: dict) -> list:
    """Add or replace ``files`` in the folder ``out_dir``, all or nothing (see :func:`publish`)."""
    return publish(out_dir, files)
