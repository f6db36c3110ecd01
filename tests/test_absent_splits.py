"""Running Das et al. without CINIC-10 or CIFAR-10H: a split role set to null is absent,
and the report leaves out what reads only it (with a note), never drawing it from another
split."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from kdaug import plan, render
from kdaug.io import write_long_csv

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
HUMAN_FILES = ["table1_test", "figure3_human_confidence", "figure6_relative_kl"]


def layered(*layers: dict) -> dict:
    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    for layer in layers:
        plan.merge_config(config, layer)
    return config


def null_roles(experiment: str, *roles: str) -> dict:
    """A config layer, as a user would write it, that takes split roles away."""
    return {"experiments": {experiment: {"eval_splits": dict.fromkeys(roles)}}}


def test_a_null_role_passes_the_schema_and_the_checks_test_never() -> None:
    config = layered(null_roles("das2020_digits", "human", "shifted"))
    jsonschema.validate(config, SCHEMA)
    plan.check_config(config)
    config["experiments"]["das2020_digits"]["eval_splits"]["test"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)


def test_a_role_left_unsaid_is_still_an_error_naming_the_null_option() -> None:
    config = layered()
    del config["experiments"]["das2020_digits"]["eval_splits"]["human"]
    with pytest.raises(plan.ConfigError, match=r"\(to run without such a split, set `human: null`"):
        plan.check_config(config)


def test_the_human_files_are_left_out_and_the_notes_say_so() -> None:
    config = layered(null_roles("das2020_digits", "human"))
    assert plan.left_out_files(config, "das2020_digits") == HUMAN_FILES
    files = plan.experiment_report_files(config, "das2020_digits")
    assert not [f for f in files if any(name in f for name in HUMAN_FILES)]
    assert "notes.md" in files and "last/figure5_reliability.png" in files
    notes = render.report_notes(config, "das2020_digits")
    assert "| human | table1_test, figure3_human_confidence, figure6_relative_kl |" in notes
    caption = render.report_caption(config, "das2020_digits", "last", "table6_students")
    assert "no human split (eval_splits.human: null)" in caption.shows
    # the view render code gets holds only the present roles
    view = plan.experiment_view(config, "das2020_digits")
    assert "human" not in view["eval_splits"] and view["absent_roles"] == ["human"]
    # with every role present nothing is left out and no notes file is planned
    assert "notes.md" not in plan.experiment_report_files(layered(), "das2020_digits")


def test_without_cinic_and_cifar10h_nothing_reads_or_downloads_them() -> None:
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    plan.merge_config(config, null_roles("das2020_cifar10", "human", "shifted"))
    plan.check_config(config)
    splits = {s for e in plan.experiment_evaluations(config, "das2020_cifar10") for s in e.splits}
    assert splits == {"test"}
    left = ["table1_test", "table2_shifted", *HUMAN_FILES[1:]]
    assert plan.left_out_files(config, "das2020_cifar10") == left
    notes = render.report_notes(config, "das2020_cifar10")
    assert "| shifted | table2_shifted |" in notes
    # Table 7 reads test and shifted: it stays, with its test rows only
    plan.merge_config(config, null_roles("das2020_augmented_students", "shifted"))
    assert plan.left_out_files(config, "das2020_augmented_students") == []
    notes = render.report_notes(config, "das2020_augmented_students")
    assert "| shifted | nothing: its tables show the other splits |" in notes


def long_rows(exp: dict) -> list[dict]:
    """Every model of ``exp`` on the test split only, two seeds."""
    rows = []
    for seed, acc in [(0, 0.8), (1, 0.9)]:
        base = {"experiment": "e", "dataset": exp["dataset"], "seed": seed, "selection": "last"}
        for aug in exp["teachers"]["augmentations"]:
            teacher = {**base, "role": "teacher", "teacher_arch": "resnet18", "teacher_aug": aug}
            models = [(teacher, acc)] + [
                ({**teacher, "role": "student", "kd": "hinton_t20", "student_arch": s,
                  "student_aug": "none"}, acc / 2)
                for s in exp["students"]["archs"]
            ]  # fmt: skip
            for row, value in models:
                for metric in ("accuracy", "precision_macro", "ece"):
                    rows.append({**row, "split": "test_human", "metric": metric, "value": value})
    return rows


def test_the_remaining_tables_render_from_the_test_split_only(tmp_path: Path) -> None:
    config = layered(null_roles("das2020_digits", "human", "shifted"))
    exp = plan.experiment_view(config, "das2020_digits")
    metrics_csv = tmp_path / "metrics.csv"
    write_long_csv(metrics_csv, long_rows(exp))
    render.render_table(metrics_csv, exp, "last", "table6_students", tmp_path / "t6")
    rows = list(csv.DictReader((tmp_path / "t6.csv").open()))
    assert {r["split"] for r in rows} == {"test_human"} and len(rows) == 5 * 2
    assert float(rows[0]["accuracy_mean"]) == pytest.approx(0.425)
    md = (tmp_path / "t6.md").read_text()
    assert "Left out: the shifted split role(s)" in md
    figure = tmp_path / "f7.png"
    render.render_figure(metrics_csv, exp, "last", "figure7_ece", [], figure)
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="the experiment has none of them"):
        render.render_table(metrics_csv, exp, "last", "table2_shifted", tmp_path / "t2")


def test_the_notes_script_writes_the_notes(tmp_path: Path) -> None:
    """The render_notes rule's script, run the way Snakemake's ``script:`` runs it."""
    notes = render.report_notes(layered(null_roles("das2020_digits", "human")), "das2020_digits")
    out, log = tmp_path / "notes.md", tmp_path / "notes.log"
    code = (
        "from types import SimpleNamespace as N\n"
        f"snakemake = N(output=[{str(out)!r}], log=[{str(log)!r}], params=N(notes={notes!r}))\n"
        + (ROOT / "workflow/scripts/render_notes.py").read_text()
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert out.read_text() == notes


def test_a_shifted_split_without_its_shift_parameters_is_a_config_error() -> None:
    config = layered()
    del config["datasets"]["digits"]["shift"]
    with pytest.raises(plan.ConfigError, match=r"test_shifted .* datasets\.digits\.shift"):
        plan.check_config(config)


def test_each_model_is_evaluated_on_the_splits_the_run_reads_of_it() -> None:
    """One evaluation job per model: the union of what the experiments of `run` read of
    it, plus the train split for a teacher whose students read its cached logits."""
    config = layered({"run": ["das2020_digits", "das2020_digits_mnist"]})
    table = plan.evaluation_splits(config)
    teacher = ("digits", 0, "resnet18-none")
    assert table[teacher] == ["test_human", "test_shifted", "train"]
    assert table[("digits", 0, "resnet18-none/hinton_t20/lenet-none")] == [
        "test_human", "test_shifted"]  # fmt: skip
    # MNIST protocol: test only (no shifted role); its students read cached logits too
    assert table[("digits_mnist", 0, "alexnet-none")] == ["test_human", "train"]
    # a role set to null in the run is not evaluated for it
    config = layered({"run": ["das2020_digits"]}, null_roles("das2020_digits", "shifted"))
    assert plan.evaluation_splits(config)[teacher] == ["test_human", "train"]
    with pytest.raises(plan.ConfigError, match="no experiment of `run` evaluates digits seed 7"):
        plan.model_splits(table, "digits", "7", "resnet18-none")
