"""Minimal PNG writer and reader (zlib + struct, no imaging library).

``encode_png`` writes 8-bit greyscale (H, W) or RGB (H, W, 3) arrays; every row uses
the PNG "Up" filter, which suits CT crops (smooth from row to row).  ``decode_png``
reads back what ``encode_png`` writes and any other non-interlaced 8-bit greyscale,
RGB or RGBA PNG (all five filter types); the tests use it to check the key images
embedded in report.html.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {0: 1, 2: 3, 6: 4}  # PNG colour type -> channels


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


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> np.ndarray:
    """Pixels of a non-interlaced 8-bit PNG: (H, W) greyscale, (H, W, 3) RGB or (H, W, 4) RGBA.

    Checks the signature and every chunk's CRC; raises ValueError on anything else.
    """
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG (bad signature)")
    pos, header, idat = 8, None, []
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos: pos + 4])
        kind = data[pos + 4: pos + 8]
        body = data[pos + 8: pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length: pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"bad PNG chunk {kind!r} (length or CRC)")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    w, h, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in _COLOR_TYPES or interlace != 0:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {color_type}, interlace {interlace})")
    ch = _COLOR_TYPES[color_type]
    stride = w * ch
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != h * (stride + 1):
        raise ValueError("PNG image data has the wrong size")
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for r in range(h):
        f, line = rows[r, 0], rows[r, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 0xFF
        elif f in (1, 3, 4):
            cur = np.zeros(stride, np.int32)
            for x in range(stride):
                a = int(cur[x - ch]) if x >= ch else 0
                b = int(prev[x])
                c = int(prev[x - ch]) if x >= ch else 0
                pred = a if f == 1 else (a + b) // 2 if f == 3 else _paeth(a, b, c)
                cur[x] = (int(line[x]) + pred) & 0xFF
        else:
            raise ValueError(f"bad PNG filter type {f} in row {r}")
        out[r] = cur
        prev = cur
    return out.reshape(h, w) if ch == 1 else out.reshape(h, w, ch)


def png_size(data: bytes) -> tuple:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])
