"""The protocol ledger (``ledger.yaml`` beside this module) as a Markdown table.

``python -m kdaug.papers.ledger`` prints it; the README holds the same table between the
``<!-- ledger -->`` markers (tests/test_ledger.py keeps the two equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LEDGER = Path(__file__).resolve().parent / "ledger.yaml"
FIELDS = ("paper", "setting", "paper_says", "code_does", "we_do", "why", "config", "status")
STATUSES = ("follows_code", "follows_text", "choice", "open")
HEADER = ("paper", "setting", "paper says", "authors' code does", "we do", "why", "status")


def load_ledger(path: Path = LEDGER) -> list[dict[str, Any]]:
    """The ledger's entries, each checked for every field and a known status."""
    entries = yaml.safe_load(path.read_text())
    for i, entry in enumerate(entries):
        missing = [f for f in FIELDS if not str(entry.get(f, "")).strip()]
        if missing:
            raise ValueError(f"{path}: entry {i} ({entry.get('setting')!r}) lacks {missing}")
        if entry["status"] not in STATUSES:
            raise ValueError(f"{path}: entry {i}: status {entry['status']!r} not in {STATUSES}")
    return entries


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def ledger_markdown(entries: list[dict[str, Any]] | None = None) -> str:
    entries = load_ledger() if entries is None else entries
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for e in entries:
        row = [e["paper"], e["setting"], e["paper_says"], e["code_does"], e["we_do"],
               f"{e['why']} (`{e['config']}`)", f"**{e['status']}**"]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(ledger_markdown(), end="")
