"""The Lua scripts are found from a source checkout and shipped inside the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from marketcore_coord_redis.scripts import SCRIPT_NAMES, lua_dir, lua_script

PROJECT = Path(__file__).resolve().parents[1]
REPO_LUA = PROJECT.parent.parent / "lua"


def test_every_script_is_found_and_named_by_its_sha():
    for name in SCRIPT_NAMES:
        script = lua_script(name)
        assert script.source == (lua_dir() / f"{name}.lua").read_text()
        assert len(script.sha) == 40
    with pytest.raises(KeyError, match="no Lua script"):
        lua_script("nope")


def test_a_source_checkout_reads_the_repositorys_lua_directory():
    import marketcore_coord_redis

    package = Path(marketcore_coord_redis.__file__).resolve().parent
    if package.parent.name != "src":
        pytest.skip("installed from a wheel: the scripts come from inside the package")
    assert lua_dir() == REPO_LUA.resolve()


def test_the_wheel_and_the_sdist_carry_the_scripts(tmp_path):
    uv = shutil.which("uv")
    if uv is None or not (PROJECT / "pyproject.toml").is_file() or not REPO_LUA.is_dir():
        pytest.skip("needs uv and a source checkout of the repository")
    # the default build: an sdist, then the wheel built from that sdist
    subprocess.run([uv, "build", "--quiet", "--out-dir", str(tmp_path / "dist"), str(PROJECT)],
                   check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {Path(n).name for n in archive.getnames() if "/lua/" in n}
    assert in_sdist == {f"{name}.lua" for name in SCRIPT_NAMES}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert {f"marketcore_coord_redis/lua/{name}.lua" for name in SCRIPT_NAMES} <= set(names)
        archive.extractall(tmp_path / "installed")
    probe = ("from marketcore_coord_redis.scripts import lua_dir, lua_script; "
             "print(lua_dir()); print(lua_script('acquire').sha)")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, env={"PYTHONPATH": str(tmp_path / "installed")}).stdout
    directory, sha = found.split()
    assert Path(directory) == tmp_path / "installed" / "marketcore_coord_redis" / "lua"
    assert sha == lua_script("acquire").sha
