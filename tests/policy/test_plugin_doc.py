"""docs/plugins.md's worked example, installed as a package would be, run through heal."""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HealFactory
from helpers import Clock, alert, drive

from heal.policy.plugins import installed, refresh

DOC = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


@pytest.fixture
def note_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    [module] = _blocks("python")
    [entry_points] = _blocks("toml")
    (tmp_path / "heal_note.py").write_text(module)
    info = tmp_path / "heal_note-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: heal-note\nVersion: 1.0\n")
    declared = tomllib.loads(entry_points)["project"]["entry-points"]["heal.plugins"]
    lines = [f"{name} = {target}" for name, target in declared.items()]
    (info / "entry_points.txt").write_text("[heal.plugins]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh()
    yield
    monkeypatch.delitem(sys.modules, "heal_note", raising=False)
    monkeypatch.undo()
    refresh()


@pytest.mark.usefixtures("note_plugin")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_documented_plugin_runs_as_an_action(
    make_heal: HealFactory, clock: Clock, tmp_path: Path
) -> None:
    assert "note" in installed()
    [policy] = _blocks("yaml")
    notes = tmp_path / "notes.log"
    heal = await make_heal(policy.replace("/var/log/heal-notes.log", str(notes)), clock=clock)
    report = await heal.ingest.ingest([alert()])
    assert report.actions_created == 1
    row = await drive(heal, clock, 1)
    assert row["status"] == "success"
    assert notes.read_text() == "CheckoutDown on checkout\n"
    assert row["outputs"] == {"written": "CheckoutDown on checkout"}
