"""Length-prefixed frames over a pipe, between reachscan and the processes it forks.

A frame is a 4-byte big-endian length, then a pickle of a tuple. Pickle is fine here
because both ends are this program, forked from one process: nothing else writes to
these pipes.
"""

from __future__ import annotations

import pickle
import struct

FRAME_HEADER = struct.Struct(">I")

Frame = tuple[object, ...]


def encode(frame: Frame) -> bytes:
    payload = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self._buffer)
            end = FRAME_HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append(pickle.loads(bytes(self._buffer[FRAME_HEADER.size : end])))
            del self._buffer[:end]
        return frames
