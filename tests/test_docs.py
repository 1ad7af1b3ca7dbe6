"""README stays true: its configuration table is the one the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from kith.platform.config import VARIABLES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_configuration_table_matches_the_code() -> None:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (.+?) \| (.+?) \|$", section, flags=re.M)
    documented = {name: (default, meaning) for name, default, meaning in rows}
    assert list(documented) == list(VARIABLES), "README's table and VARIABLES list different variables"
    for name, (default, meaning) in VARIABLES.items():
        shown_default, shown_meaning = documented[name]
        assert shown_default == (f"`{default}`" if default else "(unset)"), name
        assert shown_meaning == meaning, name


def test_readme_keeps_the_two_commands() -> None:
    assert "make dev" in README and "make test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
