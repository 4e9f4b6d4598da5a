"""The recording format: gzip text, one frame per line, ``<local_receive_ns> <raw JSON>``.

This is hftbacktest's collector format, the format of the real recordings the
project replays (SPEC §9). The JSON is either a combined-stream frame
``{"stream": …, "data": …}`` or a REST depth snapshot body ``{"lastUpdateId": …}``
written at the moment it was received.

Recorders get killed: the reader tolerates a last line cut mid-write and a gzip
stream without its trailer (everything up to the last flush is read back), so a
crash loses at most the frames since the writer's last flush. A line that is
broken anywhere else is an error naming the file and line, never silently skipped
unless the caller asks for it (``skip_bad=True``).

Decoding stays light on purpose: the reader checks the line's shape, not the
JSON; the client has its own fast decoder and the simulator parses what it needs.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

__all__ = [
    "FrameKind",
    "RecordingError",
    "RecordingReader",
    "RecordingWriter",
    "frame_kind",
    "read_recording",
]

FrameKind = Literal["snapshot", "depth", "trade", "aggTrade", "bookTicker", "ticker", "other"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16


class RecordingError(ValueError):
    """A recording that cannot be read (or written) as the format says; names file and line."""


def read_recording(path: str | os.PathLike[str], *, skip_bad: bool = False
                   ) -> Iterator[tuple[int, bytes]]:
    """Yield ``(local_receive_ns, raw_json_bytes)`` for every frame of a recording.

    Gzip or plain text (detected from the first bytes). Blank lines are skipped; a
    last line without its newline that is not complete JSON (a recorder killed
    mid-write) is dropped, as is the tail of a gzip stream cut before its trailer.
    Any other malformed line raises :class:`RecordingError` naming file and line
    number; with ``skip_bad=True`` it is counted (see :class:`RecordingReader`) and
    skipped instead.
    """
    return iter(RecordingReader(path, skip_bad=skip_bad))


class RecordingReader:
    """Iterable reader that also reports what it skipped.

    ``for recv_ns, raw in RecordingReader(p, skip_bad=True): …`` then
    ``reader.bad_lines`` (count), ``reader.truncated`` (a partial last line or a cut
    gzip stream was dropped) and ``reader.lines`` (lines read).
    """

    def __init__(self, path: str | os.PathLike[str], *, skip_bad: bool = False) -> None:
        self.path = Path(path)
        self.skip_bad = skip_bad
        self.bad_lines = 0
        self.lines = 0
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        lineno = 0
        pending = b""
        for chunk in self._chunks():
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                lineno += 1
                item = self._parse(line, lineno)
                if item is not None:
                    yield item
        self.lines = lineno
        if pending.strip():
            # The last line has no newline: a complete frame written without one, or a
            # frame cut mid-write. Only the first is data.
            lineno += 1
            self.lines = lineno
            item = self._parse(pending, lineno, last=True)
            if item is not None:
                yield item

    def _parse(self, line: bytes, lineno: int, *, last: bool = False) -> tuple[int, bytes] | None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return None
        stamp, sep, raw = line.partition(b" ")
        error = None
        if not sep or not stamp.isdigit():
            error = "expected '<receive_ns> <JSON>'"
        else:
            raw = raw.strip()
            if not (raw.startswith(b"{") and raw.endswith(b"}")):
                error = "the frame is not a JSON object"
            elif last:
                try:
                    json.loads(raw)
                except ValueError:
                    error = "the frame is not complete JSON"
        if error is None:
            return int(stamp), raw
        if last:
            self.truncated = True  # a recorder killed mid-write: not an error
            return None
        if self.skip_bad:
            self.bad_lines += 1
            return None
        shown = line[:80].decode("utf-8", "replace")
        raise RecordingError(f"{self.path}:{lineno}: {error}, found {shown!r}")

    def _chunks(self) -> Iterator[bytes]:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 -- closed in the finally below
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot open the recording: {exc.strerror}") from exc
        try:
            head = handle.read(2)
            handle.seek(0)
            if head == _GZIP_MAGIC:
                yield from self._gunzip(handle)
            else:
                while chunk := handle.read(_CHUNK):
                    yield chunk
        finally:
            handle.close()

    def _gunzip(self, handle: BinaryIO) -> Iterator[bytes]:
        """Decompress member after member; a stream cut short yields what it holds."""
        inflater = zlib.decompressobj(wbits=31)
        fed = False  # the current member has begun
        while chunk := handle.read(_CHUNK):
            while chunk:
                fed = True
                try:
                    yield inflater.decompress(chunk)
                except zlib.error as exc:
                    raise RecordingError(f"{self.path}: corrupt gzip data: {exc}") from exc
                if not inflater.eof:
                    break
                # One member ended; gzip files may hold several (a writer that appends).
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                fed = False
                if len(chunk) >= 2 and not chunk.startswith(_GZIP_MAGIC):
                    return  # trailing bytes after the last member: ignored, as gzip does
        if fed and not inflater.eof:
            # Cut before the trailer (a writer killed between flushes): keep what inflates.
            self.truncated = True
            yield inflater.flush()


class RecordingWriter:
    """Writes frames in the recording format (gzip), crash-safely.

    ``with RecordingWriter(path) as w: w.write(time.time_ns(), raw_frame_bytes)``.
    The gzip stream is sync-flushed every ``flush_interval_s`` (and by
    :meth:`flush`), so a recorder killed without ``close()`` loses at most that
    much: :func:`read_recording` reads a file cut anywhere up to its last flush.
    ``append=True`` adds a new gzip member to an existing file (readable as one).
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval_s: float = 1.0,
                 compresslevel: int = 6, append: bool = False) -> None:
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.frames = 0
        try:
            self._file = open(self.path, "ab" if append else "wb")  # noqa: SIM115
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot write the recording: {exc.strerror}") \
                from exc
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=compresslevel,
                                   filename="", mtime=0)
        self._last_flush = time.monotonic()

    def write(self, recv_ns: int, raw: bytes | str) -> None:
        """Append one frame received at ``recv_ns`` (local clock, nanoseconds)."""
        if isinstance(raw, str):
            raw = raw.encode()
        if b"\n" in raw or b"\r" in raw:
            # JSON never holds raw line breaks inside strings; outside them they are
            # whitespace, so dropping them keeps the document and the one-line format.
            raw = raw.replace(b"\r", b"").replace(b"\n", b"")
        raw = raw.strip()
        if not (raw.startswith(b"{") and raw.endswith(b"}")):
            raise RecordingError(f"{self.path}: refusing to write a frame that is not a JSON "
                                 f"object: {raw[:60]!r}")
        if recv_ns < 0:
            raise RecordingError(f"{self.path}: receive time must be >= 0, got {recv_ns}")
        self._gzip.write(b"%d %s\n" % (recv_ns, raw))
        self.frames += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far readable even if the process dies now."""
        self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._gzip.close()
        finally:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_STREAM_KEY = b'"stream":"'
_EVENT_KINDS: dict[bytes, FrameKind] = {
    b"depthUpdate": "depth", b"trade": "trade", b"aggTrade": "aggTrade",
    b"bookTicker": "bookTicker", b"24hrTicker": "ticker",
}


def frame_kind(raw: bytes) -> FrameKind:
    """Classify a recorded frame from its first bytes, without decoding it.

    ``snapshot`` (a REST depth body), ``depth`` (diff depth ``depthUpdate``),
    ``trade``, ``aggTrade``, ``bookTicker``, ``ticker`` (24 h ``24hrTicker``) or
    ``other`` (partial-book depth, klines, responses, anything else).
    """
    head = raw[:200]
    at = head.find(_STREAM_KEY)
    if at >= 0:
        start = at + len(_STREAM_KEY)
        end = head.find(b'"', start)
        name = head[start:end]
        _, _, suffix = name.partition(b"@")
        if suffix == b"depth" or suffix.startswith(b"depth@"):
            return "depth"
        kind = suffix.partition(b"@")[0]
        if kind == b"ticker":
            return "ticker"
        return _EVENT_KINDS.get(kind, "other")
    if head.lstrip().startswith(b'{"lastUpdateId"'):
        return "snapshot"
    at = head.find(b'"e":"')
    if at >= 0:
        start = at + 5
        return _EVENT_KINDS.get(head[start:head.find(b'"', start)], "other")
    if b'"u":' in head and b'"b":"' in head and b'"a":"' in head:
        return "bookTicker"  # spot bookTicker carries no "e"
    return "other"
