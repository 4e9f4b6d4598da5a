"""Build hook: ship the repository's top-level ``lua/`` scripts with the package.

A wheel built from the repository force-includes ``../../lua`` as
``marketcore_coord_redis/lua``; the sdist carries the scripts as ``lua/`` so a
wheel built from the sdist finds them there. (A static ``force-include`` of
``../../lua`` would break that second build, where the path does not exist.)
An editable install gets nothing: the package finds ``lua/`` in the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class LuaScripts(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return  # an editable install reads lua/ from the repository itself
        root = Path(self.root)
        for candidate in (root / "lua", root.parent.parent / "lua"):
            if (candidate / "acquire.lua").is_file():
                target = "marketcore_coord_redis/lua" if self.target_name == "wheel" else "lua"
                build_data["force_include"][str(candidate)] = target
                return
        raise FileNotFoundError("the Lua scripts (lua/acquire.lua …) are neither in this "
                                "project nor two directories up, at the repository's root")
