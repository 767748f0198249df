"""Minimal PNG writer (zlib + struct, no imaging library) for the key images of report.html.

``encode_png`` writes 8-bit greyscale (H, W) or RGB (H, W, 3) arrays; every row uses
the PNG "Up" filter, which suits CT crops (smooth from row to row).  The reader the
tests use to check the embedded images lives in ``Testing/png_reader.py``.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a uint8 image: (H, W) greyscale or (H, W, 3) RGB."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        color_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ValueError(f"encode_png needs an (H, W) or (H, W, 3) array, got shape {img.shape}")
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("encode_png needs a non-empty image")
    rows = img.reshape(h, w * channels)
    up = rows.copy()
    up[1:] -= rows[:-1]  # "Up" filter, modulo 256 (uint8 wraps)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = 2
    raw[:, 1:] = up
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return b"".join((
        PNG_SIGNATURE,
        _chunk(b"IHDR", header),
        _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
        _chunk(b"IEND", b""),
    ))
