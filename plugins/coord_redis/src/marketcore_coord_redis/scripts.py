"""The Lua scripts: found on disk once, run by SHA.

The scripts live as files in the repository's top-level ``lua/`` directory.
A wheel carries them inside the package (``marketcore_coord_redis/lua``, mapped
by hatch's ``force-include``); an editable install or a source checkout reads
them from the repository, found by walking up from this file.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import attrs

__all__ = ["SCRIPT_NAMES", "LuaScript", "lua_dir", "lua_script"]

SCRIPT_NAMES = ("acquire", "renew", "release", "inspect", "fenced_write")


@attrs.frozen
class LuaScript:
    """One script's source and SHA1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


def _has_scripts(directory: Path) -> bool:
    return all((directory / f"{name}.lua").is_file() for name in SCRIPT_NAMES)


@functools.cache
def lua_dir() -> Path:
    """The directory holding the ``.lua`` files: inside the package, else the repository's."""
    here = Path(__file__).resolve()
    packaged = here.with_name("lua")
    if _has_scripts(packaged):
        return packaged
    for parent in here.parents:
        candidate = parent / "lua"
        if _has_scripts(candidate):
            return candidate
    raise FileNotFoundError(
        "the coord_redis Lua scripts are missing: neither marketcore_coord_redis/lua "
        "(a wheel) nor a lua/ directory above the package (a source checkout) holds them")


@functools.cache
def lua_script(name: str) -> LuaScript:
    """The script ``name`` (one of :data:`SCRIPT_NAMES`), read once."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return LuaScript(name, (lua_dir() / f"{name}.lua").read_text(encoding="utf-8"))
