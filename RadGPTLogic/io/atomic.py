"""Atomic output: a set of files appears complete or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError


def write_files_atomically(out_dir: str | os.PathLike, files: dict) -> list:
    """Write ``files`` (relative name -> str or bytes) into ``out_dir``, all or nothing.

    Everything is first written into a temporary folder beside ``out_dir`` (same
    file system), then each file is moved into place with ``os.replace``, which is
    atomic per file.  If anything fails before the moves, ``out_dir`` is left as it
    was (a folder that did not exist is not created).  Returns the written paths.
    """
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)  # like mkdir -p: batch outputs may nest
    except OSError as exc:
        raise InputError(parent, f"cannot create output folder ({exc.strerror or exc})") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    # mkdtemp makes the folder 0700; the renamed output should get the usual
    # permissions (umask applied), like any folder the user creates.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        for name, content in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # names may hold a subfolder
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(tmp / name, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        created = not out_dir.exists()
        if created:
            # Whole folder appears at once.
            os.replace(tmp, out_dir)
            tmp = None
        else:
            for name in files:
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / name, out_dir / name)
        return [out_dir / name for name in files]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
