"""Fixtures shared by the tests of the papers' machine-readable values."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml


def paper_fixtures(paper: str, text: Path):
    """``doc`` (the values file), ``tables`` (its tables) and ``paper_lines`` (the paper's
    text, line by line) for ``papers/values/<paper>.yaml``."""

    @pytest.fixture(scope="module")
    def doc():
        return yaml.safe_load(
            resources.files("kdaug").joinpath(f"papers/values/{paper}.yaml").read_text()
        )

    @pytest.fixture(scope="module")
    def tables(doc):
        return doc["tables"]

    @pytest.fixture(scope="module")
    def paper_lines():
        if not text.is_file():
            pytest.skip(f"{text} not available")
        return text.read_text().split("\n")

    return doc, tables, paper_lines
