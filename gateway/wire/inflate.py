"""gzip and deflate response bodies, inflated in bounded pieces as they are read.

A piece is at most ``PIECE`` bytes; what a step could not take is kept (``pending``) for the next one,
so a small compressed body never becomes a large buffer ahead of its reader (a gzip bomb stops at the
reader's own bound).
"""

from __future__ import annotations

import zlib
from typing import Any

PIECE = 256 * 1024  # most bytes one inflate step yields


class BrokenBody(Exception):
    """The compressed body cannot be inflated."""


class Inflater:
    __slots__ = ("_first", "_raw_fallback", "_z", "pending")

    def __init__(self, z: Any, raw_fallback: bool) -> None:
        self._z = z
        self._first = True
        # ``deflate`` as servers send it: zlib-wrapped as the RFC says, or raw as some do.
        self._raw_fallback = raw_fallback
        self.pending = b""  # compressed bytes a step left for the next one

    def step(self, data: bytes) -> bytes:
        """Inflates ``data`` (the pending bytes first, if any are passed back in) up to ``PIECE``."""
        try:
            try:
                out = self._z.decompress(data, PIECE)
            except zlib.error:
                if not (self._first and self._raw_fallback):
                    raise
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._z.decompress(data, PIECE)
        except zlib.error as e:
            raise BrokenBody(f"the upstream's compressed body is broken ({e})") from None
        self._first = False
        self.pending = self._z.unconsumed_tail
        return bytes(out)

    def end(self) -> bytes:
        try:
            return bytes(self._z.flush())
        except zlib.error as e:
            raise BrokenBody(f"the upstream's compressed body is broken ({e})") from None


def inflater(encoding: str | None) -> Inflater | None:
    """The inflater for a ``content-encoding``; None for identity or one we did not ask for (passed on)."""
    if not encoding:
        return None
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return Inflater(zlib.decompressobj(16 + zlib.MAX_WBITS), False)
    if encoding == "deflate":
        return Inflater(zlib.decompressobj(), True)
    return None
