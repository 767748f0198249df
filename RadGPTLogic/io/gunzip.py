"""Inflating gzip data in bounded chunks, with the fastest zlib-compatible library installed.

Why chunks: a full-size mask file inflates to 75 MB, nearly all zeros.  Inflating it
into one fresh buffer costs more in the kernel (faulting in and zeroing 19,000 new
pages) than in the inflater; inflating it 1 MiB at a time into short-lived buffers
that stay in the CPU cache, and keeping only the chunks that hold data, is about six
times faster and holds a few MiB instead of 75 MB.  The NIfTI reader
(:mod:`RadGPTLogic.io.nifti`) builds on this.

Libraries, first found wins: ``isal`` (Intel ISA-L, the ``[fast]`` extra), then
``zlib-ng``, then the standard library's ``zlib``.  All three implement zlib's
``decompressobj`` API, check every member's CRC-32 and length, and give the same
bytes: inflating is exact.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

#: Most bytes one inflated chunk holds (the chunks' size on the way out).
OUT_CHUNK = 1 << 20
#: Compressed bytes handed to the inflater at a time: bounds the copies zlib's API makes
#: of input it has not consumed yet (``unconsumed_tail``) when a chunk is full.
IN_CHUNK = 1 << 16
#: ``wbits`` selecting a gzip wrapper (header, CRC-32 and length checked).
_GZIP_WBITS = 31


@lru_cache(maxsize=1)
def inflate_library() -> tuple[Any, tuple[type[BaseException], ...]]:
    """``(module, errors)``: the zlib-compatible module to inflate with and the exceptions it
    raises for bad data.  ``isal.isal_zlib``, else ``zlib_ng.zlib_ng``, else ``zlib``."""
    try:
        from isal import isal_zlib

        isal_error: type[BaseException] = isal_zlib.error  # type: ignore[assignment]  # untyped stub
        return isal_zlib, (isal_error, zlib.error)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        return zlib_ng, (zlib_ng.error, zlib.error)
    except ImportError:
        return zlib, (zlib.error,)


def iter_gunzip(path: Path, data: bytes, *, out_chunk: int = OUT_CHUNK, in_chunk: int = IN_CHUNK) -> Iterator[bytes]:
    """Yield the inflated bytes of (possibly multi-member) gzip ``data``, at most ``out_chunk`` at a time.

    Concatenated members are one stream (RFC 1952), with NUL padding between them
    allowed as ``gzip`` allows it.  Raises :class:`InputError` naming ``path`` for
    a corrupt member, a bad CRC-32 or length, or a stream that ends mid-member; the
    error comes when the bad part is reached, after the chunks before it were yielded.
    """
    module, errors = inflate_library()
    view = memoryview(data)
    pos, size = 0, len(data)
    inflater = module.decompressobj(wbits=_GZIP_WBITS)
    in_member = False   # the current inflater has been given a member's first byte
    carry = b""         # input after the end of a member, for the next one
    piece: bytes | memoryview
    try:
        while True:
            if carry:
                piece, carry = carry, b""
            elif pos < size:
                piece = view[pos:pos + in_chunk]
                pos += len(piece)
            else:
                break
            if not in_member:
                piece = bytes(piece).lstrip(b"\x00")  # padding between members
                if not piece:
                    continue
                in_member = True
            while True:
                out = inflater.decompress(piece, out_chunk)
                if out:
                    yield out
                if inflater.eof:
                    carry = inflater.unused_data
                    inflater = module.decompressobj(wbits=_GZIP_WBITS)
                    in_member = False
                    break
                piece = inflater.unconsumed_tail
                if not piece and len(out) < out_chunk:
                    break  # this input is used up and nothing is pending
        if in_member:
            tail = inflater.flush()
            if tail:
                yield tail
            if not inflater.eof:
                raise InputError(path, "corrupt or truncated gzip data (unexpected end of stream)")
    except errors as exc:
        raise InputError(path, f"corrupt or truncated gzip data ({exc})") from None

