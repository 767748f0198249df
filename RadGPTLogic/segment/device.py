"""Which torch device segmentation runs on, and what GPUs there are.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import re
import sys

from ..errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"cuda:(\d+)\Z")


def _torch():
    try:
        import torch
    except ImportError:
        raise InputError(None, f"PyTorch is not installed for {sys.executable}; install torch "
                               "(and nnunetv2) to segment, see https://pytorch.org") from None
    return torch


def _build(torch) -> str:
    """The torch build in words: ``torch 2.3.0+cu121 (CUDA 12.1)`` or ``... (CPU-only build)``."""
    cuda = getattr(torch.version, "cuda", None)
    return f"torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU-only build'})"


def pick_device(requested: str = "auto") -> str:
    """The device string for ``requested``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` is ``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``.

    Raises
    ------
    InputError
        torch missing; CUDA asked for but not available (naming the torch build, with
        the hint ``--device cpu``); ``cuda:N`` beyond the devices present; anything
        else (listing the choices).
    """
    text = str(requested or "auto").strip().lower()
    if text not in ("auto", "cpu", "cuda") and not _CUDA_INDEX.match(text):
        raise InputError(None, f"unknown device '{requested}'; choose one of {', '.join(DEVICE_CHOICES)}")
    torch = _torch()
    if text == "cpu":
        return "cpu"
    available = bool(torch.cuda.is_available())
    if text == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = ("a CPU-only build" if not getattr(torch.version, "cuda", None)
               else "built with CUDA but finds no GPU (driver, CUDA_VISIBLE_DEVICES?)")
        raise InputError(None, f"CUDA is not available: {_build(torch)} is {why}; use --device cpu")
    match = _CUDA_INDEX.match(text)
    if match:
        count = int(torch.cuda.device_count())
        if int(match.group(1)) >= count:
            present = ", ".join(f"cuda:{i}" for i in range(count))
            raise InputError(None, f"device {text} does not exist: {count} CUDA device"
                                   f"{'s' if count != 1 else ''} present ({present})")
    return text


def gpu_inventory() -> list[dict]:
    """One dict per CUDA device: ``index``, ``name``, ``total_mib``, ``free_mib`` (MiB, 1 MiB = 2**20 bytes).

    Free memory is ``torch.cuda.mem_get_info`` (the whole device, all processes); when it
    cannot be read the entry has ``free_mib`` None and a ``problem``.  Empty without torch
    or CUDA.
    """
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(int(torch.cuda.device_count())):
        entry: dict = {"index": index, "name": None, "total_mib": None, "free_mib": None, "problem": None}
        try:
            props = torch.cuda.get_device_properties(index)
            entry["name"] = props.name
            entry["total_mib"] = int(props.total_memory // 2**20)
            free, total = torch.cuda.mem_get_info(index)
            entry["free_mib"], entry["total_mib"] = int(free // 2**20), int(total // 2**20)
        except (RuntimeError, AssertionError) as exc:
            entry["problem"] = " ".join(str(exc).split())
        out.append(entry)
    return out
