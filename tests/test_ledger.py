"""The protocol ledger: well formed, and the README shows exactly what it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdaug.papers import ledger
from kdaug.report.registry import PAPERS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_entry_is_complete_and_names_a_known_paper() -> None:
    entries = ledger.load_ledger()
    assert len(entries) >= 15
    assert {e["paper"] for e in entries} <= {*PAPERS.names(), "all"}
    assert {e["status"] for e in entries} <= set(ledger.STATUSES)


def test_an_incomplete_entry_or_unknown_status_is_refused(tmp_path: Path) -> None:
    good = {f: "x" for f in ledger.FIELDS} | {"status": "choice"}
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump([good | {"why": ""}]))
    with pytest.raises(ValueError, match=r"lacks \['why'\]"):
        ledger.load_ledger(path)
    path.write_text(yaml.safe_dump([good | {"status": "maybe"}]))
    with pytest.raises(ValueError, match="status 'maybe'"):
        ledger.load_ledger(path)


def test_markdown_has_one_row_per_entry_and_escapes_pipes() -> None:
    entry = {f: "a | b" for f in ledger.FIELDS} | {"status": "open"}
    md = ledger.ledger_markdown([entry, entry])
    assert md.count("\n") == 4 and "a \\| b" in md and "**open**" in md


def test_the_readme_shows_the_ledger_as_it_is() -> None:
    text = README.read_text()
    shown = text.split("<!-- ledger -->\n", 1)[1].split("<!-- /ledger -->", 1)[0]
    assert shown == ledger.ledger_markdown(), "run: python -m kdaug.papers.ledger"
