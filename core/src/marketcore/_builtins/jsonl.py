"""Sink ``jsonl``: one report per line in a file, with size-based rotation."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs

from marketcore import hookimpl
from marketcore.components import Publication, RegisterSink


@attrs.frozen
class JsonlOptions:
    path: str
    """The file to append to; its folder is created if missing."""
    rotate_mb: float = 0.0
    """Rotate when the file passes this size (``0``: never)."""
    keep: int = 5
    """Rotated files kept: ``reports.jsonl.1`` (newest) … ``.<keep>``."""


class JsonlSink:
    """Appends each batch in one write; reports keep the order of the batch."""

    name = "jsonl"

    def __init__(self, options: JsonlOptions) -> None:
        self.path = Path(options.path)
        self.rotate_bytes = int(options.rotate_mb * 1024 * 1024)
        self.keep = max(1, options.keep)
        self._file: BinaryIO | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        assert self._file is not None, "start() was not called"
        self._file.write(b"".join(p.payload + b"\n" for p in batch))
        self._file.flush()
        if self.rotate_bytes and self._file.tell() >= self.rotate_bytes:
            self._rotate()
        return ()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@hookimpl
def marketcore_register_sinks(register: RegisterSink) -> None:
    register("jsonl", JsonlSink, options=JsonlOptions)
