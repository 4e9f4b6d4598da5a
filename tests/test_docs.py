"""Meta-tests: every hook is documented with its signature and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from marketcore import hookspecs

HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if name.startswith("marketcore_") and callable(value)
)


def test_there_are_hooks():
    assert "marketcore_register_calculators" in HOOKS
    assert len(HOOKS) >= 9


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_saying_when_and_what(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called" in doc, f"{hook}: say when it is called"
    assert ":returns:" in doc, f"{hook}: say what it returns"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(repo: Path, hook):
    guide = (repo / "docs" / "plugins.md").read_text()
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    heading = f"### `{hook}({params})`"
    assert heading in guide, f"docs/plugins.md lacks the heading {heading}"
    section = guide.split(heading, 1)[1].split("\n### ", 1)[0]
    assert "*When:*" in section and "*Returns:*" in section and "```python" in section


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(repo: Path, hook):
    test_files = [*repo.glob("core/tests/test_*.py"), *repo.glob("tests/test_*.py"),
                  *repo.glob("plugins/*/tests/test_*.py")]
    implementing = re.compile(rf"def {hook}\(")
    users = [f for f in test_files if f.name != "test_docs.py" and implementing.search(f.read_text())]
    assert users, f"no test implements {hook}"
