"""Wang et al. (2022) tables and Figure 4 from a synthetic metrics CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from kdaug.io import read_long_csv, write_long_csv
from kdaug.papers import wang2022 as wang

AUGS = ["append_identity", "append_flip", "append_cutmix", "append_cutmixpick_t"]
ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"wrn_40_2": ["wrn_16_2"], "resnet56": ["resnet20"]}


def _exp(dataset: str = "cifar100", **extra) -> dict:
    return {
        "report": "wang2022_da",
        "dataset": dataset,
        "seeds": [0, 1],
        "teachers": {"archs": list(PAIRS), "augmentations": ["standard"]},
        "students": {"archs": PAIRS, "augmentations": AUGS, "kd_methods": ["kd_t4"]},
        "teacher_stats": True,
        "eval_splits": {"test": "test"},
        **extra,
    }


def _row(seed, tarch, metric, value, split="test", selection="last", **student):
    role = "student" if student else "teacher"
    return {
        "experiment": "e", "dataset": "cifar100", "seed": seed, "role": role,
        "teacher_arch": tarch, "teacher_aug": "standard", "kd": student.get("kd"),
        "student_arch": student.get("sarch"), "student_aug": student.get("saug"),
        "selection": selection, "split": split, "metric": metric, "value": repr(float(value)),
    }  # fmt: skip


def _metrics_csv(tmp_path):
    """T. stddev falls with the scheme index; the student's loss follows it linearly with
    a seed-dependent wobble, so Pearson's r is known from the means."""
    rows = []
    means = {}
    for t_index, (tarch, students) in enumerate(PAIRS.items()):
        for seed in (0, 1):
            rows.append(_row(seed, tarch, "accuracy", 0.7 + 0.01 * seed))
            for i, aug in enumerate(AUGS):
                stddev = (5.5 - 0.4 * i - 0.1 * t_index) * 1e-3
                cell = {"kd": "kd_t4", "sarch": students[0], "saug": aug}
                loss = 0.8 + 60 * stddev + 0.01 * seed + 0.02 * (i == 1)
                means.setdefault((tarch, aug), []).append((stddev, loss))
                stream = {"split": "train_stream", "selection": ""}
                rows.append(_row(seed, tarch, "t_stddev", stddev, **stream, **cell))
                rows.append(_row(seed, tarch, "cov_mean", 1e-4 * (1 + i), **stream, **cell))
                rows.append(_row(seed, tarch, "cor_mean", 1e-2 * (2 - i), **stream, **cell))
                rows.append(_row(seed, tarch, "test_loss", loss, **cell))
                rows.append(_row(seed, tarch, "accuracy", 0.6 + 0.01 * i, **cell))
    path = tmp_path / "metrics.csv"
    write_long_csv(path, rows)
    return path, means


def test_pearson_matches_numpy_on_the_seed_means(tmp_path):
    path, means = _metrics_csv(tmp_path)
    wang.render(path, _exp(), "last", "table_pearson", str(tmp_path / "pearson"))
    with open(tmp_path / "pearson.csv") as fh:
        rows = list(csv.DictReader(fh))
    found = {(r["teacher"], r["statistic"]): r for r in rows}
    for tarch in PAIRS:
        xs = [np.mean([v[0] for v in means[(tarch, a)]]) for a in AUGS]
        ys = [np.mean([v[1] for v in means[(tarch, a)]]) for a in AUGS]
        expected = np.corrcoef(xs, ys)[0, 1]
        row = found[(tarch, "t_stddev")]
        assert float(row["pearson_r"]) == pytest.approx(expected)
        assert int(row["points"]) == len(AUGS)
        assert 0 <= float(row["p_value"]) < 0.1  # strongly correlated by construction
    # r-bar falls while the loss falls: a positive correlation too; v-bar rises: negative.
    assert float(found[("wrn_40_2", "cov_mean")]["pearson_r"]) < 0
    md = (tmp_path / "pearson.md").read_text()
    assert "| wrn_40_2 | wrn_16_2 |" in md


def test_tstddev_table_scales_and_sits_beside_the_paper(tmp_path):
    path, _ = _metrics_csv(tmp_path)
    wang.render(path, _exp(), "last", "table_tstddev", str(tmp_path / "t"))
    with open(tmp_path / "t.csv") as fh:
        rows = {r["augmentation"]: r for r in csv.DictReader(fh)}
    identity = rows["append_identity"]
    # Our T. stddev shown in units of 1e-3, the paper's Table 3 value beside it.
    assert float(identity["wrn_40_2_T._stddev_(x1e-3)_mean"]) == pytest.approx(5.5)
    assert float(identity["wrn_40_2_T._stddev_(x1e-3)_paper"]) == pytest.approx(5.473)
    assert float(identity["wrn_40_2/wrn_16_2_S._test_loss_paper"]) == pytest.approx(1.0976)
    assert int(identity["wrn_40_2_T._stddev_(x1e-3)_n"]) == 2
    # Without the paper's data there is no paper column value.
    wang.render(path, _exp("digits"), "last", "table_tstddev", str(tmp_path / "d"))
    with open(tmp_path / "d.csv") as fh:
        first = next(csv.DictReader(fh))
    assert first["wrn_40_2_T._stddev_(x1e-3)_paper"] == ""


def test_covariance_table_uses_the_printed_vbar(tmp_path):
    path, _ = _metrics_csv(tmp_path)
    wang.render(path, _exp(), "last", "table_covariance", str(tmp_path / "v"))
    with open(tmp_path / "v.csv") as fh:
        identity = next(csv.DictReader(fh))
    # Table 9 prints 0.00015322; shown x1e4 like ours.
    assert float(identity["wrn_40_2_v-bar_(x1e-4)_paper"]) == pytest.approx(1.5322)
    assert float(identity["wrn_40_2_v-bar_(x1e-4)_mean"]) == pytest.approx(1.0)


def test_accuracy_table_rows_follow_the_variants(tmp_path):
    path, _ = _metrics_csv(tmp_path)
    exp = _exp()
    exp["report"] = "wang2022_accuracy"
    exp["students"]["variants"] = [
        {"kd_method": "kd_t4", "augmentation": "append_cutmix"},
        {"kd_method": "kd_t4", "augmentation": "append_identity"},
    ]
    exp["paper_rows"] = {"kd_t4/append_cutmix": "kd_cutmix"}
    wang.render(path, exp, "last", "table_accuracy", str(tmp_path / "a"))
    with open(tmp_path / "a.csv") as fh:
        rows = {r["row"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["teacher", "kd_t4/append_cutmix", "kd_t4/append_identity"]
    cutmix = rows["kd_t4/append_cutmix"]
    assert float(cutmix["wrn_40_2/wrn_16_2_mean"]) == pytest.approx(62.0)  # percent
    assert float(cutmix["wrn_40_2/wrn_16_2_paper"]) == pytest.approx(75.34)
    assert float(rows["teacher"]["resnet56/resnet20_paper"]) == pytest.approx(72.34)
    assert rows["kd_t4/append_identity"]["wrn_40_2/wrn_16_2_paper"] == ""
    assert math.isclose(float(rows["teacher"]["wrn_40_2/wrn_16_2_mean"]), 70.5)


def test_scatter_figure_is_written(tmp_path):
    path, _ = _metrics_csv(tmp_path)
    out = tmp_path / "fig.png"
    wang.render(path, _exp(), "last", "figure4_tstddev_vs_loss", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_vs_epochs_figure_reads_the_resolved_epochs(tmp_path):
    rows = []
    for seed in (0, 1):
        rows.append(_row(seed, "resnet56", "accuracy", 0.7))
        for kd, epochs in (("ce_a", 60), ("ce_b", 240), ("kd_a", 60), ("kd_b", 240)):
            for aug in ("none", "standard"):
                cell = {"kd": kd, "sarch": "resnet20", "saug": aug}
                acc = 0.5 + epochs / 1000 + (0.05 if kd.startswith("kd") else 0)
                rows.append(_row(seed, "resnet56", "accuracy", acc, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    exp = {
        "report": "wang2022_epochs",
        "dataset": "cifar100",
        "seeds": [0, 1],
        "teachers": {"archs": ["resnet56"], "augmentations": ["standard"]},
        "students": {
            "archs": {"resnet56": ["resnet20"]},
            "augmentations": ["none", "standard"],
            "kd_methods": ["ce_a", "ce_b", "kd_a", "kd_b"],
        },
        "eval_splits": {"test": "test"},
        "student_epochs": {"ce_a": 60, "ce_b": 240, "kd_a": 60, "kd_b": 240},
        "kd_alpha": {"ce_a": 0.0, "ce_b": 0.0, "kd_a": 0.9, "kd_b": 0.9},
    }
    out = tmp_path / "fig2.png"
    wang.render(path, exp, "last", "figure2_error_vs_epochs", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wang.render(path, exp, "last", "table_accuracy", str(tmp_path / "acc"))
    with open(tmp_path / "acc.csv") as fh:
        got = {r["row"]: float(r["resnet56/resnet20_mean"]) for r in csv.DictReader(fh)}
    assert got["kd_b/standard"] == pytest.approx(100 * (0.5 + 0.24 + 0.05))
    assert len(got) == 1 + 8  # the teacher row and the 4 x 2 crossed students


def _with_sanity_check(tmp_path):
    """The synthetic grid plus Wang et al.'s constant-image scheme: the lowest T. stddev
    of all and the worst student, the counterexample of their appendix A.2."""
    path, means = _metrics_csv(tmp_path)
    rows = [dict(r) for r in read_long_csv(path)]
    for tarch, students in PAIRS.items():
        cell = {"kd": "kd_t4", "sarch": students[0], "saug": "append_constant"}
        stream = {"split": "train_stream", "selection": ""}
        for seed in (0, 1):
            rows.append(_row(seed, tarch, "t_stddev", 1e-3, **stream, **cell))
            rows.append(_row(seed, tarch, "test_loss", 2.5 + 0.01 * seed, **cell))
            rows.append(_row(seed, tarch, "accuracy", 0.3, **cell))
    write_long_csv(path, rows)
    specs = {a: {"name": a, "steps": [], "append": []} for a in AUGS}
    specs["append_constant"] = {"name": "append_constant", "steps": [],
                                "append": [{"op": "constant", "value": 0.5}]}  # fmt: skip
    exp = _exp(augmentation_specs=specs)
    exp["students"] = {**exp["students"], "augmentations": [*AUGS, "append_constant"]}
    return path, means, exp


def test_the_constant_image_scheme_is_labelled_and_left_out_of_r(tmp_path):
    path, means, exp = _with_sanity_check(tmp_path)
    assert wang.sanity_checks(exp) == {"append_constant"}
    wang.render(path, exp, "last", "table_pearson", str(tmp_path / "p"))
    with open(tmp_path / "p.csv") as fh:
        found = {(r["teacher"], r["statistic"]): r for r in csv.DictReader(fh)}
    xs = [np.mean([v[0] for v in means[("wrn_40_2", a)]]) for a in AUGS]
    ys = [np.mean([v[1] for v in means[("wrn_40_2", a)]]) for a in AUGS]
    row = found[("wrn_40_2", "t_stddev")]
    assert int(row["points"]) == len(AUGS)  # the sanity check is not a point
    assert float(row["pearson_r"]) == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert "Not among the points: append_constant" in (tmp_path / "p.md").read_text()
    wang.render(path, exp, "last", "table_tstddev", str(tmp_path / "t"))
    with open(tmp_path / "t.csv") as fh:
        labels = [r["augmentation"] for r in csv.DictReader(fh)]
    assert labels[-1] == "append_constant (sanity check: every x' one constant image)"
    assert labels[:-1] == AUGS


def test_accuracy_correlation_is_its_own_target(tmp_path):
    path, _, exp = _with_sanity_check(tmp_path)
    results = wang.WangResults(read_long_csv(path), exp)
    found = {(c.pair[0], c.statistic): c for c in wang.correlations(results, "last", "accuracy")}
    # accuracy rises with the scheme index while T. stddev falls: r < 0, over 4 schemes
    assert found[("wrn_40_2", "t_stddev")].r < 0 and found[("wrn_40_2", "t_stddev")].points == 4


@pytest.mark.parametrize("figure", ["figure4_tstddev_vs_loss", "figure6_tstddev_vs_accuracy"])
def test_tstddev_scatters_draw_the_sanity_check_apart(tmp_path, figure):
    path, _, exp = _with_sanity_check(tmp_path)
    out = tmp_path / f"{figure}.png"
    wang.render(path, exp, "last", figure, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure7_sweeps_the_appendix_pairs(tmp_path):
    """Figure 7: the epochs sweep on wrn_40_2 -> wrn_16_2 and vgg13 -> vgg8, one panel
    per pair, from the paper config's experiment."""
    from kdaug import plan

    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    exp = plan.experiment_view(config, "wang2022_cifar100_epochs_pairs")
    assert plan.experiment_report_files(config, "wang2022_cifar100_epochs_pairs")[2:] == [
        "last/table_accuracy.csv", "last/table_accuracy.md", "last/table_accuracy.tex",
        "last/figure7_error_vs_epochs.png",
    ]  # fmt: skip
    cells = plan.experiment_cells(config, "wang2022_cifar100_epochs_pairs")
    assert sum(c.role == "student" for c in cells) == 3 * 2 * 10 * 4
    rows = []
    for seed in (0, 1, 2):
        for tarch, sarch in (("wrn_40_2", "wrn_16_2"), ("vgg13", "vgg8")):
            rows.append(_row(seed, tarch, "accuracy", 0.75))
            for kd, epochs in exp["student_epochs"].items():
                for strength, aug in enumerate(exp["students"]["augmentations"]):
                    # stronger augmentation: worse when short, better when long (Fig. 7)
                    kd_gain = 0.03 if exp["kd_alpha"][kd] > 0 else 0.0
                    longer = math.log2(epochs / 60) - 2
                    acc = 0.65 + kd_gain + 0.01 * strength * longer - 0.005 * longer**2
                    acc += 0.005 * seed
                    cell = {"kd": kd, "sarch": sarch, "saug": aug}
                    rows.append(_row(seed, tarch, "accuracy", acc, **cell))
    path = tmp_path / "m.csv"
    write_long_csv(path, rows)
    out = tmp_path / "fig7.png"
    wang.render(path, exp, "last", "figure7_error_vs_epochs", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure8_reads_the_split_and_the_first_teacher_so_snakemake_builds_them() -> None:
    from kdaug import plan, render

    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    inputs = render.figure_inputs(
        config, "wang2022_digits_da", "last", "figure8_cutmix_disagreement"
    )
    assert inputs == {"outputs": [
        "results/data/digits_rd/train.npz",
        "results/models/digits_rd/seed0/resnet20-standard/model.pt",
    ]}  # fmt: skip
    assert wang.cutmix_scheme(plan.experiment_view(config, "wang2022_digits_da")) == "append_cutmix"


def test_figure8_counts_and_draws_the_disagreeing_cutmix_copies(tmp_path):
    """A tiny teacher on toy data: every drawn copy is counted, the share is a fraction,
    and the figure is a PNG."""
    from kdaug.data.canonical import save_split
    from kdaug.train.training import train_cell
    from test_trust import teacher_spec, toy_split

    save_split(tmp_path / "train.npz", toy_split())
    save_split(tmp_path / "val.npz", toy_split(30))
    teacher = tmp_path / "models/toy/seed0/lenet-none/model.pt"
    teacher.parent.mkdir(parents=True)
    train_cell(teacher_spec(epochs=1), train_path=str(tmp_path / "train.npz"),
               val_path=str(tmp_path / "val.npz"), output=str(teacher))  # fmt: skip
    cutmix = {"name": "append_cutmix", "steps": [{"op": "flip", "p": 0.5}],
              "append": [{"op": "cutmix", "alpha": 1.0, "self_pairs": False}]}  # fmt: skip
    exp = {
        "dataset": "toy", "seeds": [0],
        "teachers": {"archs": ["lenet"], "augmentations": ["none"]},
        "students": {"archs": ["lenet"], "augmentations": ["append_cutmix"]},
        "normalization": {"mean": [0.3], "std": [0.3]},
        "augmentation_specs": {"append_cutmix": cutmix},
    }  # fmt: skip
    outputs = [str(tmp_path / "train.npz"), str(teacher)]
    samples = wang.cutmix_samples(exp, *outputs)
    assert len(samples.probs) == wang.DISAGREEMENT_BATCHES * 60  # a batch is the whole toy split
    assert samples.images.min() >= 0 and samples.images.max() <= 1
    assert (samples.targets.max(axis=1) < 1).any()  # CutMix mixed labels
    out = tmp_path / "fig8.png"
    wang.render(None, exp, "last", "figure8_cutmix_disagreement", str(out), outputs)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
