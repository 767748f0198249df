"""Messages between the panel and its measurement process: pickles over a pipe, arrays out of band.

A message is a pickle (protocol 5) whose large contiguous buffers (numpy arrays: the
CT, labelmap layer copies) travel beside it instead of inside it, so neither side
copies them into the pickle.  Frame layout (little-endian)::

    u64 header length, u64 number of buffers, header bytes,
    then per buffer: u64 length, raw bytes

Writing and reading are plain file I/O on the pipe, during which Python releases
the GIL: the panel's thread that talks to the process never holds it for long.
"""

from __future__ import annotations

import pickle
import struct

_HEAD = struct.Struct("<QQ")
_SIZE = struct.Struct("<Q")


class ChannelClosed(EOFError):
    """The other end of the pipe is gone (the process ended)."""


def send(stream, obj) -> None:
    """Write one message to a binary stream and flush it."""
    buffers = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    stream.write(_HEAD.pack(len(header), len(buffers)))
    stream.write(header)
    for buffer in buffers:
        raw = buffer.raw()
        stream.write(_SIZE.pack(raw.nbytes))
        stream.write(raw)
    stream.flush()


def _read_exact(stream, n: int) -> bytearray:
    data = bytearray(n)
    view = memoryview(data)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise ChannelClosed("the pipe was closed")
        got += k
    return data


def recv(stream):
    """Read one message from a binary stream (blocks); :class:`ChannelClosed` at end of stream."""
    n_header, n_buffers = _HEAD.unpack(bytes(_read_exact(stream, _HEAD.size)))
    header = _read_exact(stream, n_header)
    buffers = [_read_exact(stream, _SIZE.unpack(bytes(_read_exact(stream, _SIZE.size)))[0])
               for _ in range(n_buffers)]
    return pickle.loads(header, buffers=buffers)
