"""The workflow's code hashes: which kdaug source a rule's script runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdaug import codehash

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow/scripts"


def test_imports_anywhere_in_a_file_and_dynamic_names(tmp_path):
    source = tmp_path / "s.py"
    source.write_text(
        "import os\n"
        "from kdaug.io import atomic_path\n"
        "from kdaug import plan\n"
        "def f():\n"
        "    from kdaug.models import zoo  # function-local\n"
        "    return importlib.import_module('kdaug.papers.wang2022')  # dynamic\n"
        "X = 'kdaug.no_such_module'\n"
    )
    assert codehash.kdaug_imports(source) == {
        "io",
        "plan",
        "models",
        "models.zoo",
        "papers.wang2022",
    }


def test_closure_follows_imports_and_parent_packages():
    train = codehash.module_closure(codehash.kdaug_imports(SCRIPTS / "train.py"))
    # train/__init__ imports autoaugment (it registers itself); models/ registers the zoo
    assert {"train.training", "train.engine", "train.augment", "train.autoaugment"} <= train
    assert {"train.losses", "models", "models.repdistiller.wrn", "data"} <= train
    assert not {m for m in train if m.startswith(("report", "papers"))}  # training never
    render = codehash.module_closure(codehash.kdaug_imports(SCRIPTS / "render_table.py"))
    # the papers package registers every paper
    assert {"papers", "report.tables", "papers.wang2022", "papers.choi2023"} <= render
    assert "measure.vscore" in render


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "kdaug"
    shutil.copytree(codehash.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codehash, "PACKAGE_DIR", copy)
    return copy


def _edit(path: Path) -> None:
    """A change to what the module runs (a comment would not count: see the next test)."""
    text = path.read_text()
    path.write_text(text + ("\nEDITED = 1\n" if path.suffix == ".py" else "\n# edited\n"))


def test_code_hash_ignores_comments_docstrings_imports_and_module_names(package_copy):
    train = SCRIPTS / "train.py"
    before = codehash.code_hash(train)
    engine = package_copy / "train/engine.py"
    text = engine.read_text()
    # a comment, a reworded docstring and one more (unused) import: nothing runs differently
    engine.write_text(
        text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\nimport os  # noqa\n"
    )
    assert codehash.code_hash(train) == before
    engine.write_text(text.replace("return", "return  ", 1))  # formatting only
    assert codehash.code_hash(train) == before
    engine.write_text(text + "\nEDITED = 1\n")
    assert codehash.code_hash(train) != before


def test_source_hash_does_not_depend_on_where_a_module_lives(package_copy):
    before = codehash.source_hash(["train.engine", "train.losses"])
    (package_copy / "moved").mkdir()
    (package_copy / "train/engine.py").rename(package_copy / "moved/engine.py")
    assert codehash.source_hash(["moved.engine", "train.losses"]) == before


def test_code_hash_changes_with_the_code_a_rule_runs_only(package_copy):
    train, render = SCRIPTS / "train.py", SCRIPTS / "render_table.py"
    before = {s: codehash.code_hash(s) for s in (train, render)}
    _edit(package_copy / "papers/choi2023.py")  # rendering code, not training code
    assert codehash.code_hash(render) != before[render]
    assert codehash.code_hash(train) == before[train]
    _edit(package_copy / "train/autoaugment.py")
    assert codehash.code_hash(train) != before[train]


def test_code_hash_covers_the_papers_values_tables_read(package_copy):
    render = SCRIPTS / "render_table.py"
    before = codehash.code_hash(render)
    _edit(package_copy / "papers/values/choi2023.yaml")
    assert codehash.code_hash(render) != before
