"""Helpers shared by the benchmarks: machine description and writing results."""

from __future__ import annotations

import collections
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root; shared data lives next to it, in ``../shared``."""

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
"""Recorded market data outside the repository (see its SOURCES.md); may be absent."""


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, Python and numpy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "os": platform.platform(),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line describing the machine."""
    numpy = f", numpy {info['numpy']}" if "numpy" in info else ""
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, "
        f"{info['implementation']} {info['python']}{numpy}, {info['os']}."
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the others right."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, payload: dict[str, Any], markdown: str) -> None:
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n", encoding="utf-8")


def find_pyspy() -> str | None:
    """py-spy next to the interpreter (a venv's ``bin``) or on PATH; ``None`` if absent."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def read_pyspy(raw_path: Path, *, within: str | None = None) -> Iterator[tuple[list[str], int]]:
    """``(frames outermost first, count)`` per line of a raw py-spy file (``--format
    raw``); with ``within``, only the stacks that pass through that function (so that
    set-up work in the same process is left out)."""
    for line in raw_path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if within is not None and not any(f.partition(" (")[0] == within for f in frames):
            continue
        yield frames, int(count)


def summarize_pyspy(raw_path: Path, top: int = 14, *, within: str | None = None,
                    lines: bool = False) -> list[tuple[str, float, float]]:
    """``(function, self %, total %)`` of the busiest functions in a raw py-spy file.

    ``lines``: by source line (``fn (module.py:12)``) instead of by function."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for stack, n in read_pyspy(raw_path, within=within):
        samples += n
        frames = [_short(f, lines=lines) for f in stack]
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    if not samples:
        return []
    return [(name, 100 * n / samples, 100 * total[name] / samples)
            for name, n in own.most_common(top)]


def _short(frame: str, *, lines: bool = False) -> str:
    """``fn (path/to/module.py:12)`` → ``fn (module.py)``, or ``fn (module.py:12)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":") if ":" in where else (where, "", "")
    if not path:
        return name
    return f"{name} ({Path(path).name}:{line})" if lines and line else f"{name} ({Path(path).name})"
