"""Reading reports back from where a profile's sinks put them, for ``report`` and ``top``.

The profile's sinks are tried in order and the first that can be read wins:

* ``http`` — the node's read API (``GET /get_report``, ``/reports``; ``top`` follows
  ``/ws``);
* ``jsonl`` — the file: the last line of a symbol, read from the end;
* any other sink that is a :class:`marketcore.components.ReportReader` (the ``redis``
  sink) — built from the profile, started, asked, closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from marketcore._builtins.http import HttpOptions, split_bind
from marketcore._plugins import Registries
from marketcore.components import ReportReader
from marketcore.profile import Profile, structure_options

Report = dict[str, Any]


class ReadError(Exception):
    """Reports cannot be read: one line for the user, and a hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _entry(report: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ReportReader.index()`` entry from a decoded report."""
    writer = report.get("writer") or {}
    updated = report.get("updatedAt")
    return {"symbol": report.get("symbol"),
            "age_ms": None if not isinstance(updated, int) else int(time.time() * 1000) - updated,
            "status": (report.get("ingestion") or {}).get("status"),
            "owner": writer.get("nodeId"), "epoch": writer.get("epoch"),
            "token": writer.get("writerToken")}


# ---------------------------------------------------------------------------
# http
# ---------------------------------------------------------------------------


class HttpReader:
    """The ``http`` sink's read API, as a :class:`ReportReader` (plus ``follow`` for ``/ws``)."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.where = self.base_url

    @classmethod
    def from_options(cls, options: HttpOptions) -> HttpReader:
        host, port = split_bind(options.bind)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        return cls(f"http://{f'[{host}]' if ':' in host else host}:{port}")

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as answer:
            return answer.code, answer.read()
        except (OSError, urllib.error.URLError) as error:
            reason = getattr(error, "reason", error)
            raise ReadError(f"cannot reach the read API at {self.base_url} ({reason})",
                            "is a node running with this profile? `marketcore run PROFILE` "
                            "starts one") from None

    async def latest(self, symbol: str) -> bytes | None:
        status, body = await asyncio.to_thread(
            self._get, "/get_report?" + urllib.parse.urlencode({"symbol": symbol}))
        if status == 404:
            return None
        if status != 200:
            raise ReadError(f"the read API answered {status}: {_error_text(body)}")
        return body

    async def index(self) -> Sequence[Mapping[str, Any]]:
        status, body = await asyncio.to_thread(self._get, "/reports")
        if status != 200:
            raise ReadError(f"the read API answered {status}: {_error_text(body)}")
        return json.loads(body)["reports"]

    async def follow(self) -> AsyncIterator[list[Report]]:
        """Batches of reports from ``/ws``: the current ones, then every update."""
        from websockets.asyncio.client import connect  # only ``top`` needs it

        url = "ws" + self.base_url[4:] + "/ws"
        try:
            async with connect(url, max_size=None, open_timeout=self.timeout_s) as ws:
                async for message in ws:
                    yield json.loads(message)
        except OSError as error:
            raise ReadError(f"cannot reach the read API at {self.base_url} ({error})",
                            "is a node running with this profile?") from None

    async def close(self) -> None:
        pass


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return "unexpected answer"


# ---------------------------------------------------------------------------
# jsonl
# ---------------------------------------------------------------------------


def _lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The file's lines, last first, reading blocks from the end (never the whole file)."""
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        position = file.tell()
        rest = b""
        while position > 0:
            step = min(block, position)
            position -= step
            file.seek(position)
            chunk = file.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines.pop(0)
            yield from (line for line in reversed(lines) if line.strip())
        if rest.strip():
            yield rest


class JsonlReader:
    """A ``jsonl`` sink's file (and its newest rotated file) as a :class:`ReportReader`."""

    def __init__(self, path: Path, index_bytes: int = 16 << 20) -> None:
        self.path = path
        self.where = str(path)
        self.index_bytes = index_bytes
        self._offset = 0

    def _files(self) -> list[Path]:
        files = [p for p in (self.path, self.path.with_name(self.path.name + ".1")) if p.exists()]
        if not files:
            raise ReadError(f"no report file at {self.path}",
                            "the jsonl sink creates it when a node with this profile runs")
        return files

    async def latest(self, symbol: str) -> bytes | None:
        return await asyncio.to_thread(self._latest, symbol)

    def _latest(self, symbol: str) -> bytes | None:
        needle = json.dumps({"symbol": symbol}, separators=(",", ":"))[1:-1].encode()
        for file in self._files():
            for line in _lines_backwards(file):
                if needle in line:
                    with contextlib.suppress(ValueError):
                        if json.loads(line).get("symbol") == symbol:
                            return line
        return None

    async def index(self) -> Sequence[Mapping[str, Any]]:
        return await asyncio.to_thread(self._index)

    def _index(self) -> list[dict[str, Any]]:
        latest: dict[str, Report] = {}
        read = 0
        for line in _lines_backwards(self._files()[0]):
            read += len(line) + 1
            if read > self.index_bytes:
                break
            with contextlib.suppress(ValueError, AttributeError):
                report = json.loads(line)
                latest.setdefault(report["symbol"], report)
        return [_entry(report) for _, report in sorted(latest.items())]

    async def follow(self) -> AsyncIterator[list[Report]]:
        """The latest report of every symbol, then each line appended to the file."""
        yield [json.loads(await self.latest(e["symbol"]) or b"{}") for e in await self.index()]
        self._offset = self.path.stat().st_size
        while True:
            await asyncio.sleep(0.25)
            batch = await asyncio.to_thread(self._appended)
            if batch:
                yield batch

    def _appended(self) -> list[Report]:
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self._offset:  # rotated: start over on the new file
            self._offset = 0
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read(size - self._offset)
        complete, _, _ = data.rpartition(b"\n")
        self._offset += len(complete) + (1 if complete else 0)
        found = []
        for line in complete.split(b"\n"):
            with contextlib.suppress(ValueError):
                if line.strip():
                    found.append(json.loads(line))
        return found

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# any other sink that reads back (redis)
# ---------------------------------------------------------------------------


@attrs.define
class SinkReader:
    """A sink of the profile that is a :class:`ReportReader`, started for reading."""

    sink: Any
    where: str

    async def latest(self, symbol: str) -> bytes | None:
        return await self.sink.latest(symbol)

    async def index(self) -> Sequence[Mapping[str, Any]]:
        return await self.sink.index()

    async def follow(self) -> AsyncIterator[list[Report]]:
        """Every second: the reports whose payload changed since the last look."""
        seen: dict[str, bytes] = {}
        while True:
            entries = await self.sink.index()
            symbols = [e["symbol"] for e in entries]
            payloads = await asyncio.gather(*(self.sink.latest(s) for s in symbols))
            batch = []
            for symbol, payload in zip(symbols, payloads, strict=True):
                if payload is not None and seen.get(symbol) != payload:
                    seen[symbol] = payload
                    batch.append(json.loads(payload))
            yield batch
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        await self.sink.close()


# ---------------------------------------------------------------------------
# choosing
# ---------------------------------------------------------------------------


async def open_reader(profile: Profile, registries: Registries) -> Any:
    """The first of the profile's sinks that can be read back, ready to read.

    Raises :class:`ReadError` when none can (a profile with only ``stdout``).
    """
    for index, section in enumerate(profile.sink):
        registration = registries.sinks.get(section.use)
        if registration is None:
            continue
        path = f"sink[{index}]"
        options: Any = section.options
        if registration.options is not None:
            options = structure_options(section.options, registration.options,
                                        source=profile.source, path=path,
                                        env_paths=profile.env_paths)
        if section.use == "http":
            return HttpReader.from_options(options)
        if section.use == "jsonl":
            return JsonlReader(Path(options.path))
        component = registration.factory(options)
        if isinstance(component, ReportReader):
            await component.start()
            return SinkReader(component, f"the {section.use} sink")
    sinks = ", ".join(s.use for s in profile.sink) or "none"
    raise ReadError(f"{profile.source}: no sink of this profile can be read back (sinks: {sinks})",
                    'add [[sink]] use = "http" (or "jsonl" / "redis") to the profile')
