"""Streaming decode of a trace file: the JSON text a block at a time, the events a chunk at a time.

`decode.decode` needs the whole decompressed text in memory (54 MB for a 3 MB gzip trace) and
a `Raw` slice per event on top. This module never holds more than a few MB of text: it inflates
the file a block at a time, reads the header keys before `traceEvents`, and cuts the event array
at separators (`}` `,` `{` between two events) into chunks that are decoded and handed on one by
one; the header keys after the array are read from the tail.

A cut is only a guess until its chunk decodes: a separator can sit inside a string or inside
an array of objects in `args`. A chunk that ends at a wrong cut cannot decode (its last value is
unfinished), so every chunk is checked by its own decode, and anything the stream does not
handle — a wrong cut, malformed JSON, a truncated gzip member, an unusual top-level shape —
raises `StreamFallback`; the loader then reads the file whole on the general path of
`decode.decode`, which also words the errors. The stream is a fast path, never the only one.

Two processes can share one file: the head reads from the top and stops at the first
separator at or after a byte offset `split` of the text; the tail starts at that same
separator (it inflates the text before it without decoding it) and reads to the end.
"""

from __future__ import annotations

import os
import re
import types
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from perftune.trace.decode import (
    TopLevel,
    array_decoder,
    chunk_decoder,
    decode_chunk,
    decode_events,
    lax_chunk_decoder,
    open_regular,
    top_decoder,
)
from perftune.trace.limits import TextLimit, text_limit

_inflate_lib: types.ModuleType
try:  # ISA-L's inflate: the same API as zlib, about 3x faster on trace text
    from isal import isal_zlib

    _inflate_lib = isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; kept optional for odd platforms
    _inflate_lib = zlib
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflate_lib.error)

# Text per chunk of events: a few thousand events, a few MB of typed structs at a time.
STREAM_BYTES = 1 << 20
READ_BYTES = 1 << 18  # compressed bytes read at a time
BLOCK_BYTES = 1 << 20  # decompressed bytes produced at a time
# A chunk is cut at the first separator this far before the end of the buffered text (or later).
_TAIL_BYTES = 1 << 16
# A header this long before "traceEvents" is not a Kineto trace: read it whole instead.
MAX_PREFIX = 1 << 26
_SEPARATOR = re.compile(rb"\}\s*,\s*\{")
_EVENTS_KEY = re.compile(rb'"traceEvents"\s*:\s*\[')
_GZIP = b"\x1f\x8b"
_SPACE = b" \t\r\n"


class StreamFallback(Exception):
    """The stream met something it does not handle; read the file whole instead."""


def _blocks(fh: IO[bytes], path: Path, limit: TextLimit) -> Iterator[bytes]:
    """The file's JSON text, a block at a time (gunzipped when it is gzip, by magic); past
    the limit, a TraceError (a plain file's size was checked when it was opened)."""
    head = fh.read(2)
    if head != _GZIP:
        data = head + fh.read(BLOCK_BYTES)
        while data:
            yield data
            data = fh.read(BLOCK_BYTES)
        return
    pending = head
    inflater = _inflate_lib.decompressobj(wbits=31)
    left = limit.max_bytes
    try:
        while True:
            if not pending:
                pending = fh.read(READ_BYTES)
                if not pending:
                    if not inflater.eof:
                        raise StreamFallback("truncated gzip data")
                    return
            out = inflater.decompress(pending, BLOCK_BYTES)
            pending = inflater.unconsumed_tail
            if out:
                left -= len(out)
                if left < 0:
                    raise limit.exceeded(path)
                yield out
            if inflater.eof:
                rest = inflater.unused_data + pending
                if not rest:
                    rest = fh.read(READ_BYTES)
                    if not rest:
                        return
                if rest[:2] != _GZIP:
                    raise StreamFallback("data after the gzip member")
                inflater = _inflate_lib.decompressobj(wbits=31)  # next member of a concatenation
                pending = rest
    except _INFLATE_ERRORS as exc:
        raise StreamFallback(f"corrupt gzip data ({exc})") from None


def _header_values(top: TopLevel) -> dict[str, Any]:
    """The header fields a decoded (partial) top-level object holds, without traceEvents."""
    return {k: v for k, v in msgspec.structs.asdict(top).items()
            if k != "traceEvents" and v is not None}


class EventStream:
    """The events of one trace file as typed chunks, read without holding the whole text."""

    def __init__(self, path: Path, problems: Counter[str], max_bytes: int | None = None) -> None:
        self.path = path
        self.problems = problems
        self.header: dict[str, Any] = {}  # keys before traceEvents, then those after it
        self.array_form = False  # the file is a bare JSON array of events
        self.events = 0
        self._fh = open_regular(path)
        try:
            self.compressed = self._fh.read(2) == _GZIP
            self._size = os.fstat(self._fh.fileno()).st_size
            self.limit = text_limit(path, self._size, self.compressed, max_bytes)
            if not self.compressed and self._size > self.limit.max_bytes:
                raise self.limit.exceeded(path)
        except BaseException:
            self._fh.close()
            raise
        self._fh.seek(0)
        self._blocks = _blocks(self._fh, path, self.limit)
        self._buf = bytearray()
        self._pos = 0  # offset in the text of _buf[0]
        self._off = 0  # bytes at the front of _buf already consumed (dropped lazily)

    def text_size(self) -> int:
        """The size of the file's JSON text: the gzip trailer's figure (mod 4 GiB, so a guess
        for bigger traces), else the file size. Only used to balance work and reserve address
        space, never trusted: a truncated or forged trailer claims anything, so the figure is
        capped by the text limit."""
        size = self._size
        if not self.compressed or size < 18:
            return size
        where = self._fh.tell()
        self._fh.seek(-4, 2)
        isize = int.from_bytes(self._fh.read(4), "little")
        self._fh.seek(where)
        while isize < size:  # text is never smaller than its gzip: add the lost 4 GiB multiples
            isize += 1 << 32
        return min(isize, self.limit.max_bytes)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- text
    def _more(self) -> bool:
        """Append the next block of text to the buffer; False at the end of the file.

        Chunks are decoded in place (`_middle`) and their `Raw` values keep views of the buffer,
        so a buffer that may be exported is never resized: once text before `_off` has been
        consumed, the live tail and the block are joined into a new buffer (one copy of each,
        where compacting and growing in place copied the tail up to three times); a buffer
        read from its start grows in place while nothing views it."""
        for block in self._blocks:
            if self._off:
                live = memoryview(self._buf)[self._off:]
                self._buf = bytearray().join((live, block))
                live.release()
                self._pos += self._off
                self._off = 0
            else:
                try:
                    self._buf += block
                except BufferError:  # a chunk decoded from it is still alive
                    self._buf = bytearray().join((self._buf, block))
            return True
        return False

    def _drop(self, upto: int) -> None:
        """Forget the text before offset `upto` of the file's text (only marks it consumed;
        `_more` reclaims the space when it needs room)."""
        n = upto - self._pos
        if n >= len(self._buf):  # callers never drop past what was read
            self._pos += len(self._buf)
            self._buf = bytearray()  # a new one: the old may be viewed by decoded events
            self._off = 0
        elif n > self._off:
            self._off = n

    # -------------------------------------------------------------- the top of the file
    def open_head(self) -> int:
        """Read the header keys before the event array; return the text offset of the array's
        first byte after `[`."""
        while len(self._buf) < 3 and self._more():
            pass
        if self._buf[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark some editors add
            del self._buf[:3]
            self._pos = 3
        while True:
            buf = self._buf  # `_more` may hand over a new buffer
            stripped = len(buf) - len(buf.lstrip(_SPACE))
            if stripped < len(buf):
                break
            if not self._more():
                raise StreamFallback("empty file")
        first = buf[stripped:stripped + 1]
        if first == b"[":
            self.array_form = True
            return self._pos + stripped + 1
        if first != b"{":
            raise StreamFallback("not an object")
        look = stripped
        while True:
            buf = self._buf
            k = buf.find(b'"traceEvents"', look)
            if k >= 0:
                m = _EVENTS_KEY.match(buf, k)
                if m is not None:
                    break
                if len(buf) - k > 4096 or not self._more():
                    raise StreamFallback("traceEvents is not a list")
                continue
            look = max(stripped, len(buf) - 16)
            if len(buf) > MAX_PREFIX or not self._more():
                raise StreamFallback("no traceEvents key")
        prefix = bytes(buf[:m.end()]) + b"]}"
        try:
            top = top_decoder.decode(prefix)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise StreamFallback("header does not decode") from None
        self.header.update(_header_values(top))
        return self._pos + m.end()

    def open_tail(self, split: int) -> int | None:
        """Skip to the first separator at or after text offset `split` (the cut of the head);
        return the offset of its `{`, or None when the file's events end before it."""
        if self._fh.seekable() and self._fh.read(2) != _GZIP:
            self._fh.seek(split)  # plain text: no need to read what comes before
            self._blocks = _blocks(self._fh, self.path, self.limit)
            self._pos = split
        else:
            self._fh.seek(0)
            self._blocks = _blocks(self._fh, self.path, self.limit)
        look = split
        while True:
            if self._pos + len(self._buf) > split:
                self._drop(split)
                m = _SEPARATOR.search(self._buf, max(self._off, look - self._pos))
                if m is not None:
                    return self._pos + m.end() - 1
                look = self._resume(look)
            elif self._buf:
                self._drop(self._pos + len(self._buf))
            if not self._more():
                return None

    def _resume(self, look: int) -> int:
        """Where a separator search that found nothing from text offset `look` goes on once
        more text has come: at the last `}` it passed (a separator cut by the end of the buffer
        starts there), else at the end. Searching from `look` again would rescan the whole
        buffer per block: quadratic in a stretch without separators (a gzip bomb of blanks)."""
        brace = self._buf.rfind(b"}", max(self._off, look - self._pos))
        return self._pos + (brace if brace >= 0 else len(self._buf))

    # -------------------------------------------------------------- events
    def read(self, start: int, stop: int | None = None) -> Iterator[list[Any]]:
        """Typed events from text offset `start` (an event's `{`, or just after `[`) in chunks:
        to the end of the file, or only up to the first separator at or after `stop`."""
        self._drop(start)
        while True:
            begin = self._pos + self._off
            # A chunk of at least STREAM_BYTES, and up to near the end of what the buffer holds.
            target = max(begin + STREAM_BYTES, self._edge(stop))
            if stop is not None:
                target = min(target, stop)
            m = None
            look = target  # text offset where the search starts
            while True:  # _more may compact the buffer: positions are recomputed each time
                m = _SEPARATOR.search(self._buf, max(self._off, look - self._pos))
                if m is not None:
                    break
                look = self._resume(look)
                if not self._more():
                    break
                look = max(look, self._edge(stop))
            if m is None:
                yield from self._last(bytes(self._buf[self._off:]))
                return
            cut = self._pos + m.start()
            events = self._middle(self._off, m.start() + 1 - self._off)
            self._drop(self._pos + m.end() - 1)
            self.events += len(events)
            yield events
            if stop is not None and cut >= stop:
                return

    def _edge(self, stop: int | None) -> int:
        """Where a chunk's cut is looked for once the buffer holds enough text: near its end
        (the text left after the cut is copied again with the next block), never past `stop`."""
        edge = self._pos + len(self._buf) - _TAIL_BYTES
        return edge if stop is None else min(edge, stop)

    def _middle(self, start: int, n: int) -> list[Any]:
        """Decode `n` bytes of the buffer from `start` as a list of events. The chunk is decoded
        in place: the separator bytes on either side of it (or the array's `[`), consumed text,
        become its brackets; its `Raw` values then view the buffer, which `_more` therefore never
        resizes. At the buffer's front (no byte before it) the text is copied between brackets."""
        buf = self._buf
        data: bytes | memoryview
        if start > 0:
            buf[start - 1] = 0x5B  # [
            buf[start + n] = 0x5D  # ], a byte of the separator after the chunk's last event
            data = memoryview(buf)[start - 1:start + n + 1]
        else:
            with memoryview(buf) as view, view[start:start + n] as text:
                data = b"".join((b"[", text, b"]"))
        for decoder in (chunk_decoder, lax_chunk_decoder):
            try:
                events: list[Any] = decoder.decode(data)
                return events
            except msgspec.ValidationError:
                continue
            except (msgspec.DecodeError, RecursionError):
                raise StreamFallback("a chunk does not decode (a cut inside a value?)") from None
        try:
            raws = array_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise StreamFallback("a chunk does not decode") from None
        return decode_events(raws, self.problems)

    def _last(self, text: bytes) -> Iterator[list[Any]]:
        """The events up to the end of the array, and the header keys after it."""
        try:
            if self.array_form:
                raws = array_decoder.decode(b"[" + text)
            else:
                top = top_decoder.decode(b'{"traceEvents":[' + text)
                raws = top.traceEvents or []
                for key, value in _header_values(top).items():
                    self.header.setdefault(key, value)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise StreamFallback("the end of the file does not decode") from None
        del text
        self._buf = bytearray()
        if raws:
            events = decode_chunk(raws, self.problems)
            self.events += len(events)
            yield events
