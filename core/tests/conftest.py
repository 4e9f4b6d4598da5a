"""Shared fixtures of the core suite."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Shared CI machines are noisy: no hypothesis deadlines (they are timing assertions).
settings.register_profile("marketcore", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "marketcore"))


def write_distribution(root: Path, dist: str, module: str, source: str,
                       entry_name: str | None = None) -> Path:
    """Lay out an installed distribution as an installer (``pip --target``) does.

    ``root/module.py`` plus ``root/<dist>-0.1.dist-info`` with METADATA and an
    ``entry_points.txt`` in the ``marketcore`` group, so ``importlib.metadata``
    finds it once ``root`` is on ``sys.path``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[marketcore]\n{entry_name or dist} = {module}\n")
    (info / "RECORD").write_text("")
    return root


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``install_plugin(dist, module, source)``: a throw-away plugin, importable for this test."""

    def install(dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
        root = write_distribution(tmp_path / dist, dist, module, source, entry_name)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p))
        return root

    return install


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(text: str, name: str = "profile.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
