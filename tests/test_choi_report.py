"""Choi et al. (2023) tables and figures from a synthetic metrics CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from kdaug import plan
from kdaug.io import write_long_csv
from kdaug.papers import choi2023 as choi

ROOT = Path(__file__).resolve().parents[1]


def _row(seed, tarch, taug, metric, value, split="test", **student):
    return {
        "experiment": "e", "dataset": "cifar100", "seed": seed,
        "role": "student" if student else "teacher", "teacher_arch": tarch,
        "teacher_aug": taug, "kd": student.get("kd"), "student_arch": student.get("sarch"),
        "student_aug": student.get("saug"), "selection": "last", "split": split,
        "metric": metric, "value": repr(float(value)),
    }  # fmt: skip


def _read(stem) -> dict[str, dict[str, str]]:
    with open(f"{stem}.csv") as fh:
        rows = list(csv.DictReader(fh))
    key = next(iter(rows[0]))
    return {r[key] if key != "teacher" else f"{r['teacher']}/{r['student']}": r for r in rows}


def _variants_run(tmp_path, tarch, archs, variants, teacher_acc=None):
    """A metrics CSV with one student per (KD method, augmentation) variant, accuracy
    0.70 + 0.01 * its index (and the teacher's, if given), and its experiment."""
    sarch = archs[tarch][0] if isinstance(archs, dict) else archs[0]
    rows = [] if teacher_acc is None else [_row(0, tarch, "standard", "accuracy", teacher_acc)]
    for i, (kd, saug) in enumerate(variants):
        cell = {"kd": kd, "sarch": sarch, "saug": saug}
        rows.append(_row(0, tarch, "standard", "accuracy", 0.70 + 0.01 * i, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    exp = {
        "dataset": "cifar100",
        "teachers": {"archs": [tarch], "augmentations": ["standard"]},
        "students": {
            "archs": archs,
            "augmentations": list(dict.fromkeys(a for _, a in variants)),
            "kd_methods": list(dict.fromkeys(k for k, _ in variants)),
            "variants": [{"kd_method": k, "augmentation": a} for k, a in variants],
        },
        "eval_splits": {"test": "test"},
    }
    return path, exp


def test_scenarios_map_teacher_and_student_mixup(tmp_path):
    # Student accuracy encodes its scenario: 0.70 + 0.01 * (teacher mixup) + 0.02 * (student mixup).
    rows = []
    for seed in (0, 1):
        for tarch in ("resnet20", "resnet110"):
            for t_mix, taug in enumerate(("standard", "fmu_a10")):
                rows.append(_row(seed, tarch, taug, "accuracy", 0.6 + 0.05 * t_mix))
                for s_mix, saug in enumerate(("standard", "fmu_a10")):
                    cell = {"kd": "kd_t4", "sarch": "resnet56", "saug": saug}
                    acc = 0.70 + 0.01 * t_mix + 0.02 * s_mix + 0.001 * seed
                    rows.append(_row(seed, tarch, taug, "accuracy", acc, **cell))
                    vscore = 0.5 - 0.1 * s_mix
                    rows.append(_row(seed, tarch, taug, "vscore_similar", vscore, "train", **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    augs = ["standard", "fmu_a10"]
    exp = {
        "dataset": "cifar100",
        "teachers": {"archs": ["resnet20", "resnet110"], "augmentations": augs},
        "students": {"archs": ["resnet56"], "augmentations": augs, "kd_methods": ["kd_t4"]},
        "eval_splits": {"test": "test", "train": "train"},
    }
    choi.render(path, exp, "last", "table_scenarios", str(tmp_path / "s"))
    table = _read(tmp_path / "s")["resnet20/resnet56"]
    expected = {"T&S": 70.05, "Mix-T&S": 71.05, "Mix-T&Mix-S": 73.05, "T&Mix-S": 72.05}
    for scenario, value in expected.items():
        assert float(table[f"{scenario}_mean"]) == pytest.approx(value)
    assert float(table["teacher_(fmu_a10)_mean"]) == pytest.approx(65.0)
    choi.render(path, exp, "last", "table_vscore", str(tmp_path / "v"))
    text = (tmp_path / "v.md").read_text()
    assert "vscore_similar (train)" in text and "Mix-T&Mix-S" in text
    choi.render(path, exp, "last", "figure2_scenarios", str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_partial_mixup_grid_reads_the_augmentation_names(tmp_path):
    augs = ["standard", "pmu10_a02", "pmu10_a10", "pmu50_a10", "fmu_a02", "fmu_a10"]
    rows = [_row(0, "wrn_40_2", "standard", "accuracy", 0.8)]
    for i, aug in enumerate(augs):
        cell = {"kd": "rescaled_kd", "sarch": "wrn_16_2", "saug": aug}
        rows.append(_row(0, "wrn_40_2", "standard", "accuracy", 0.70 + 0.01 * i, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    exp = {
        "dataset": "cifar100",
        "teachers": {"archs": ["wrn_40_2"], "augmentations": ["standard"]},
        "students": {"archs": ["wrn_16_2"], "augmentations": augs, "kd_methods": ["rescaled_kd"]},
        "eval_splits": {"test": "test"},
    }
    percents, alphas, names = choi.pmu_grid(exp)
    assert percents == [10, 50, 100] and alphas == ["0.2", "1.0"]
    assert names[(100, "0.2")] == "fmu_a02"
    choi.render(path, exp, "last", "table4_partial_mixup", str(tmp_path / "p"))
    rows_ = _read(tmp_path / "p")
    assert float(rows_["PMU=10%"]["alpha=1.0_mean"]) == pytest.approx(72.0)
    assert float(rows_["FMU"]["alpha=0.2_mean"]) == pytest.approx(74.0)
    assert rows_["PMU=50%"]["alpha=0.2_mean"] == "nan"  # not in the grid
    assert float(rows_["no mixup (standard)"]["alpha=0.2_mean"]) == pytest.approx(70.0)
    # CIFAR-100: Table 4's published value beside each grid cell (PMU=10%, alpha 1.0: 75.92)
    assert float(rows_["PMU=10%"]["alpha=1.0_paper"]) == 75.92
    assert float(rows_["PMU=10%"]["alpha=1.0_diff"]) == pytest.approx(72.0 - 75.92)
    assert float(rows_["FMU"]["alpha=0.2_paper"]) == 76.01
    assert "paper 75.92" in (tmp_path / "p.md").read_text()
    choi.render(path, {**exp, "compare_with_paper": False}, "last", "table4_partial_mixup",
                str(tmp_path / "q"))  # fmt: skip
    assert _read(tmp_path / "q")["PMU=10%"]["alpha=1.0_paper"] == ""
    choi.render(path, exp, "last", "figure6_partial_mixup", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0


def test_partial_mixup_table_shows_table4s_rows_without_mixup(tmp_path):
    """KD and Vanilla (Table 4's w/o M.: 74.60 and 73.26) beside the grid's KD method."""
    variants = [
        ("rescaled_kd", "pmu10_a10"), ("rescaled_kd", "fmu_a10"), ("rescaled_kd", "standard"),
        ("kd_t4", "standard"), ("ce_only", "standard"),
    ]  # fmt: skip
    path, exp = _variants_run(tmp_path, "wrn_40_2", ["wrn_16_2"], variants)
    exp["paper_rows"] = {"kd_t4/standard": "kd", "ce_only/standard": "vanilla"}
    choi.render(path, exp, "last", "table4_partial_mixup", str(tmp_path / "p"))
    table = _read(tmp_path / "p")
    assert list(table) == [
        "PMU=10%", "FMU", "no mixup (standard)", "no mixup (kd_t4/standard)",
        "no mixup (ce_only/standard)",
    ]  # fmt: skip
    assert float(table["no mixup (standard)"]["alpha=1.0_mean"]) == pytest.approx(72.0)
    assert table["no mixup (standard)"]["alpha=1.0_paper"] == ""  # Table 4 prints none
    assert float(table["no mixup (kd_t4/standard)"]["alpha=1.0_mean"]) == pytest.approx(73.0)
    assert float(table["no mixup (kd_t4/standard)"]["alpha=1.0_paper"]) == 74.60
    assert float(table["no mixup (ce_only/standard)"]["alpha=1.0_paper"]) == 73.26
    choi.render(path, {**exp, "compare_with_paper": False}, "last", "table4_partial_mixup",
                str(tmp_path / "q"))  # fmt: skip
    assert _read(tmp_path / "q")["no mixup (kd_t4/standard)"]["alpha=1.0_paper"] == ""
    choi.render(path, exp, "last", "figure6_partial_mixup", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_robustness_table_per_attack_and_eps(tmp_path):
    rows = []
    variants = [("ce_only", "standard"), ("rescaled_kd", "pmu10_a10")]
    for kd, saug in variants:
        cell = {"kd": kd, "sarch": "resnet20", "saug": saug}
        for method, drop in (("fgsm", 1.0), ("ifgsm", 2.0)):
            for eps in (0.0, 0.001, 0.01):
                acc = 0.7 - drop * eps * 10
                rows.append(_row(0, "resnet110", "standard", f"{method}_{eps:g}", acc, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    exp = {
        "dataset": "cifar100",
        "teachers": {"archs": ["resnet110"], "augmentations": ["standard"]},
        "students": {
            "archs": ["resnet20"],
            "augmentations": ["standard", "pmu10_a10"],
            "kd_methods": ["ce_only", "rescaled_kd"],
            "variants": [{"kd_method": k, "augmentation": a} for k, a in variants],
        },
        "eval_splits": {"test": "test"},
        "paper_rows": {"ce_only/standard": "vanilla", "rescaled_kd/pmu10_a10": "ours"},
    }
    choi.render(path, exp, "last", "table3_robustness", str(tmp_path / "r"))
    table = _read(tmp_path / "r")
    row = table["ce_only/standard"]
    assert float(row["fgsm_eps=0_mean"]) == pytest.approx(70.0)
    assert float(row["ifgsm_eps=0.01_mean"]) == pytest.approx(50.0)
    # Table 3's columns: vanilla FGSM at eps 0.001 61.14, I-FGSM at 0.01 13.28; ours 37.40
    assert float(row["fgsm_eps=0.001_paper"]) == 61.14
    assert float(row["ifgsm_eps=0.01_paper"]) == 13.28
    assert float(table["rescaled_kd/pmu10_a10"]["ifgsm_eps=0.01_paper"]) == 37.40
    choi.render(path, exp, "last", "figure7_robustness", str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 0


def test_mixup_attacks_rows_are_the_mixup_settings_without_paper_values(tmp_path):
    """Figure 7's ablation: one row per Table 4 student, attack accuracy per eps, its own
    caption and title; no published number (Figure 7 prints none)."""
    augs = ["fmu_a02", "fmu_a10", "pmu50_a07"]
    rows = []
    for seed in (0, 1):
        for i, saug in enumerate(augs):
            cell = {"kd": "rescaled_kd", "sarch": "wrn_16_2", "saug": saug}
            for eps in (0.0, 0.01):
                acc = 0.7 - eps * 10 * (3 - i) / 3 + 0.01 * seed
                rows.append(_row(seed, "wrn_40_2", "standard", f"fgsm_{eps:g}", acc, **cell))
                rows.append(_row(seed, "wrn_40_2", "standard", f"ifgsm_{eps:g}", acc, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    exp = {
        "dataset": "cifar100",
        "compare_with_paper": False,
        "teachers": {"archs": ["wrn_40_2"], "augmentations": ["standard"]},
        "students": {"archs": ["wrn_16_2"], "augmentations": augs, "kd_methods": ["rescaled_kd"]},
        "eval_splits": {"test": "test"},
    }
    choi.render(path, exp, "last", "table_mixup_attacks", str(tmp_path / "a"))
    table = _read(tmp_path / "a")
    assert list(table) == [f"rescaled_kd/{a}" for a in augs]
    # fmu_a02: 0.7 - 0.1 (+0.005 mean seed offset) -> 60.5 %; pmu50_a07: 0.7 - 0.1/3 + 0.005
    assert float(table["rescaled_kd/fmu_a02"]["fgsm_eps=0.01_mean"]) == pytest.approx(60.5)
    assert float(table["rescaled_kd/pmu50_a07"]["ifgsm_eps=0.01_mean"]) == pytest.approx(
        100 * (0.7 - 0.1 / 3 + 0.005)
    )
    assert all(r["fgsm_eps=0.01_paper"] == "" for r in table.values())
    assert "Fig. 7 (the Table 4 students)" in (tmp_path / "a.md").read_text()
    choi.render(path, exp, "last", "figure7_mixup_attacks", str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_rescaled_table_shows_table1_values_by_paper_rows(tmp_path):
    variants = [("kd_t4", "standard"), ("rescaled_kd", "pmu10_a10")]
    path, exp = _variants_run(tmp_path, "resnet56", {"resnet56": ["resnet20"]}, variants, 0.72)
    exp["paper_rows"] = {"teacher": "teacher", "kd_t4/standard": "kd",
                         "rescaled_kd/pmu10_a10": "ours_pmu10"}  # fmt: skip
    choi.render(path, exp, "last", "table1_rescaled", str(tmp_path / "t"))
    with open(tmp_path / "t.csv") as fh:
        table = {r["row"]: r for r in csv.DictReader(fh)}
    # Choi et al. Table 1, RN56 -> RN20: teacher 72.34, KD 70.66, ours PMU 10% 72.09
    assert float(table["teacher"]["resnet56/resnet20_paper"]) == 72.34
    assert float(table["kd_t4/standard"]["resnet56/resnet20_paper"]) == 70.66
    assert float(table["rescaled_kd/pmu10_a10"]["resnet56/resnet20_mean"]) == pytest.approx(71.0)
    assert float(table["rescaled_kd/pmu10_a10"]["resnet56/resnet20_paper"]) == 72.09
    assert "Choi et al. 2023 Table 1" in (tmp_path / "t.md").read_text()


def _scenario_exp() -> dict:
    augs = ["standard", "fmu_a10"]
    return {
        "dataset": "toy", "seeds": [0],
        "teachers": {"archs": ["resnet20"], "augmentations": augs},
        "students": {"archs": ["resnet8"], "augmentations": augs, "kd_methods": ["kd_t4"]},
        "eval_splits": {"test": "test", "train": "train"},
        "vscore_groups": {"similar": ["a", "b", "c"], "dissimilar": ["d", "e", "f"]},
        "figures": {"tsne_per_class": 20},
    }  # fmt: skip


def _write_outputs(path, spread: float, rng) -> None:
    """A model's outputs file (kdaug.measure.extract): both splits of the toy experiment."""
    labels = np.repeat(np.arange(6), 25)
    centres = rng.normal(size=(6, 8)) * 4
    arrays = {}
    for split in ("train", "test"):
        arrays[f"{split}.labels"] = labels
        arrays[f"{split}.embeddings"] = centres[labels] + rng.normal(size=(150, 8)) * spread
        arrays[f"{split}.logits"] = np.eye(6)[labels] * 3 / spread + rng.normal(size=(150, 6))
    np.savez(path, **arrays, class_names=np.array(list("abcdef")),
             splits=np.array(["train", "test"]))  # fmt: skip


def test_outputs_figures_read_every_scenario_model(tmp_path):
    exp = _scenario_exp()
    models = choi.scenario_models(exp)
    labels = [label for label, _ in models]
    assert labels == ["T:resnet20", "Mix-T:resnet20", "T&S:resnet8", "Mix-T&S:resnet8",
                      "Mix-T&Mix-S:resnet8", "T&Mix-S:resnet8"]  # fmt: skip
    # the Mix-T&S student is distilled from the mixup teacher, trained without mixup
    cell = dict(models)["Mix-T&S:resnet8"]
    assert (cell.teacher_aug, cell.student_aug, cell.kd) == ("fmu_a10", "standard", "kd_t4")
    sources = choi.figure_sources(exp, "figure3_tsne", "last")
    assert len(sources) == 6 and all(s.endswith("/eval/last/outputs.npz") for s in sources)
    assert choi.figure_sources(exp, "figure2_scenarios", "last") == []
    rng = np.random.default_rng(0)
    for name in ("figure3_tsne", "figure4_class_distributions"):
        files = []
        for i, _ in enumerate(choi.figure_sources(exp, name, "last")):
            files.append(tmp_path / f"{name}_{i}.npz")
            _write_outputs(files[-1], spread=0.5 + i % 6, rng=rng)
        choi.render(None, exp, "last", name, str(tmp_path / f"{name}.png"), outputs=files)
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="expects 12 outputs files, got 1"):
        choi.render(None, exp, "last", "figure4_class_distributions", "x.png", outputs=files[:1])


def test_figure4_names_every_column_class_on_the_bottom_row(tmp_path, monkeypatch):
    """Figure 4's columns are all the classes: the bottom row names them (rotated), the
    first column names its rows' group classes, the other panels carry no tick labels."""
    exp = _scenario_exp()
    rng = np.random.default_rng(2)
    files = []
    for i, _ in enumerate(choi.figure_sources(exp, "figure4_class_distributions", "last")):
        files.append(tmp_path / f"o{i}.npz")
        _write_outputs(files[-1], spread=1.0, rng=rng)
    figures = []
    monkeypatch.setattr(choi.plots, "save", lambda fig, path: figures.append(fig))
    choi.render(None, exp, "last", "figure4_class_distributions", "f.png", outputs=files)
    axes = figures[0].axes[:12]  # 2 rows (train, test) x 6 models, then the colour bar
    for k, ax in enumerate(axes):
        xs = [t.get_text() for t in ax.get_xticklabels()]
        ys = [t.get_text() for t in ax.get_yticklabels()]
        assert xs == (list("abcdef") if k >= 6 else []), k
        assert (ys != []) == (k % 6 == 0), k
    choi.plots.pyplot().close(figures[0])


def test_figures_contrast_the_listed_teachers(tmp_path):
    """figures.teachers (Choi et al. contrast ResNet110 with ResNet20 in Figs. 3-4): each
    listed teacher's pair and scenario students, in the listed order, drawn."""
    exp = _scenario_exp()
    exp["teachers"]["archs"] = ["resnet20", "resnet110"]
    exp["figures"]["teachers"] = ["resnet110", "resnet20"]
    labels = [label for label, _ in choi.scenario_models(exp)]
    assert labels[:6] == ["T:resnet110", "Mix-T:resnet110", "T(resnet110)&S:resnet8",
                          "Mix-T(resnet110)&S:resnet8", "Mix-T(resnet110)&Mix-S:resnet8",
                          "T(resnet110)&Mix-S:resnet8"]  # fmt: skip
    assert labels[6:8] == ["T:resnet20", "Mix-T:resnet20"] and len(set(labels)) == 12
    cells = dict(choi.scenario_models(exp))
    assert cells["Mix-T(resnet110)&S:resnet8"].teacher_arch == "resnet110"
    rng = np.random.default_rng(1)
    for name, count in (("figure3_tsne", 12), ("figure4_class_distributions", 24)):
        files = []
        for i, _ in enumerate(choi.figure_sources(exp, name, "last")):
            files.append(tmp_path / f"{name}{i}.npz")
            _write_outputs(files[-1], spread=0.5 + i % 6, rng=rng)
        assert len(files) == count  # 2 teachers x 6 models (x train, test for Figure 4)
        choi.render(None, exp, "last", name, str(tmp_path / f"{name}.png"), outputs=files)
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_figure_teacher_the_experiment_lacks_is_named() -> None:
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    config["experiments"]["choi2023_scenarios"]["figures"]["teachers"] = ["resnet111"]
    with pytest.raises(
        plan.ConfigError, match=r"choi2023_scenarios.figures.teachers: \['resnet111'\]"
    ):
        plan.check_config(config)


def test_class_mean_distributions_by_hand():
    probs = np.array([[0.8, 0.2, 0.0], [0.6, 0.2, 0.2], [0.1, 0.9, 0.0]])
    labels = np.array([0, 0, 1])
    means = choi.class_mean_distributions(probs, labels, [1, 0])
    np.testing.assert_allclose(means, [[0.1, 0.9, 0.0], [0.7, 0.2, 0.1]])


def _figure1_exp() -> dict:
    exp = _scenario_exp()
    exp["teachers"]["archs"] = ["resnet110", "resnet56"]
    exp["students"] = {"archs": {"resnet110": ["resnet56"]}, "augmentations": ["standard"],
                       "kd_methods": ["kd_t1", "kd_t4", "kd_t8", "kd_t16"]}  # fmt: skip
    exp["kd_temperature"] = {f"kd_t{t}": t for t in (1, 4, 8, 16)}  # as plan.experiment_view
    return exp


def test_figure1_draws_scratch_models_and_students_per_temperature(tmp_path):
    """Figure 1: row 1 the teachers trained from scratch (S, Mix-S per arch), then the
    resnet56 student of each resnet110 teacher at each temperature; every panel titled
    with its model, test accuracy and V-score."""
    exp = _figure1_exp()
    rows = choi.figure1_models(exp)
    assert [label for label, _ in rows[0]] == [
        "S:resnet110", "Mix-S:resnet110", "S:resnet56", "Mix-S:resnet56"]  # fmt: skip
    assert [label for label, _ in rows[1]] == [
        f"T:resnet110 & resnet56, KD T = {t}" for t in (1, 4, 8, 16)]  # fmt: skip
    assert [c.teacher_aug for _, c in rows[2]] == ["fmu_a10"] * 4 and len(rows) == 3
    assert {c.kd for _, c in rows[0]} == {None}
    sources = choi.figure_sources(exp, "figure1_tsne", "last")
    assert len(sources) == 2 * 12  # train (features) and test (accuracy) per model
    assert "/resnet110-standard/eval/last/" in sources[0] == sources[12]
    rng = np.random.default_rng(2)
    files = []
    for i, _ in enumerate(sources):
        files.append(tmp_path / f"f1_{i}.npz")
        _write_outputs(files[-1], spread=0.5 + (i % 12) / 3, rng=rng)
    out = tmp_path / "figure1_tsne.png"
    titles = []
    real_finish = choi.plots.finish

    def finish(fig, path, title, fontsize=10):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        real_finish(fig, path, title, fontsize)

    choi.plots.finish = finish
    try:
        choi.render(None, exp, "last", "figure1_tsne", str(out), outputs=files)
    finally:
        choi.plots.finish = real_finish
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len(titles) == 12
    assert titles[0].startswith("S:resnet110\nacc ") and "V = " in titles[0]
    assert titles[4].startswith("T:resnet110 & resnet56\nKD T = 1\nacc ")
    assert all(re.search(r"acc \d+\.\d\d%, V = \d\.\d{3}$", t) for t in titles)


def test_figure1_table_lists_every_model_with_accuracy_and_vscores(tmp_path):
    exp = _figure1_exp()
    rows = []
    for seed in (0, 1):
        for _, cell in (m for row in choi.figure1_models(exp) for m in row):
            student = {} if cell.kd is None else {
                "kd": cell.kd, "sarch": cell.student_arch, "saug": cell.student_aug}  # fmt: skip
            for split in ("train", "test"):
                rows.append(_row(seed, cell.teacher_arch, cell.teacher_aug, "vscore_similar",
                                 0.5 + 0.1 * seed, split=split, **student))  # fmt: skip
            rows.append(_row(seed, cell.teacher_arch, cell.teacher_aug, "accuracy", 0.7,
                             **student))  # fmt: skip
    write_long_csv(tmp_path / "m.csv", rows)
    choi.render(tmp_path / "m.csv", exp, "last", "table_figure1", str(tmp_path / "t"))
    with open(tmp_path / "t.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 12
    assert (table[0]["model"], table[0]["KD_method"]) == ("S:resnet110", "none")
    assert (table[7]["model"], table[7]["KD_method"]) == ("T:resnet110 & resnet56", "kd_t16")
    assert float(table[7]["test_accuracy_(%)_mean"]) == pytest.approx(70.0)
    assert float(table[7]["vscore_similar_(train)_mean"]) == pytest.approx(0.55)


def test_figure1_experiment_plans_scratch_models_and_temperature_students() -> None:
    """choi2023_figure1: resnet110 and resnet56 without / with mixup, and a resnet56
    student of each resnet110 teacher at T = 1, 4, 8, 16; the teachers and the T = 4 and
    T = 1 students are the scenario and temperature experiments' cells (5 new per seed)."""
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    plan.check_config(config)
    for t in (8, 16):
        assert config["kd_methods"][f"kd_t{t}"] == {"loss": "hinton", "temperature": t,
                                                   "alpha": 0.9}  # fmt: skip
    cells = plan.experiment_cells(config, "choi2023_figure1")
    seeds = config["experiments"]["choi2023_figure1"]["seeds"]
    teachers = {(c.teacher_arch, c.teacher_aug) for c in cells if c.kd is None}
    assert teachers == {(a, g) for a in ("resnet110", "resnet56") for g in ("standard", "fmu_a10")}
    students = [c for c in cells if c.kd is not None]
    assert len(students) == len(seeds) * 2 * 4
    assert {(c.teacher_arch, c.student_arch, c.student_aug) for c in students} == {
        ("resnet110", "resnet56", "standard")}  # fmt: skip
    assert {c.kd for c in students} == {"kd_t1", "kd_t4", "kd_t8", "kd_t16"}
    shared = {c for e in ("choi2023_scenarios", "choi2023_temperature")
              for c in plan.experiment_cells(config, e)}  # fmt: skip
    assert len(set(cells) - shared) == len(seeds) * 5
    exp = plan.experiment_view(config, "choi2023_figure1")
    drawn = {cell for row in choi.figure1_models(exp) for _, cell in row}
    assert drawn <= set(cells) and len(drawn) == 12
    assert "last/figure1_tsne.png" in plan.experiment_report_files(config, "choi2023_figure1")
