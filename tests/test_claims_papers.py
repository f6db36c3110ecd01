"""The three papers' claims files and the engine's correlation claims, starred (per pair)
selectors and claim kinds: each shipped claim's direction on synthetic results, the
correlation test against hand arithmetic, and every claim against the configs' cells."""

import functools
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from kdaug import plan
from kdaug.cells import STREAM_SPLIT
from kdaug.io import LONG_COLUMNS, write_long_csv
from kdaug.measure.robustness import ATTACKS, attack_metric
from kdaug.papers import CLAIMS_DIR, VALUES_DIR
from kdaug.report import claims as C
from kdaug.report.registry import PAPERS, REPORTS

ROOT = Path(__file__).resolve().parents[1]
PAPER_TEXTS = ROOT.parent / "shared" / "papers"
PAPER_FILES = {"das2020": "das2020_*.txt", "wang2022": "wang2022.txt", "choi2023": "choi2023.txt"}
SPLITS = {"test": "test", "train": "train", "shifted": "cinic10", "human": "cifar10h"}
PAIR = ("resnet56", "resnet20")


def load(paper: str) -> list[C.Claim]:
    return C.load_claims(CLAIMS_DIR / f"{paper}.yaml")


def row(seed, sel: C.Selector, metric, value, split="test", selection="last", pair=PAIR):
    """One long-CSV row of the model ``sel`` selects (its stars bound to ``pair``)."""
    tarch = pair[0] if sel.teacher_arch in (None, C.EACH) else sel.teacher_arch
    student = not sel.is_teacher
    sarch = pair[1] if sel.model == C.EACH else sel.model
    r = {
        "experiment": "exp", "dataset": "cifar100", "seed": str(seed),
        "role": "student" if student else "teacher", "teacher_arch": tarch,
        "teacher_aug": sel.teacher_aug, "kd": (sel.kd or "kd_t4") if student else "",
        "student_arch": sarch if student else "",
        "student_aug": (sel.student_aug or "standard") if student else "",
        "selection": selection, "split": split, "metric": metric, "value": repr(float(value)),
    }  # fmt: skip
    assert tuple(r) == LONG_COLUMNS
    return r


def where(role: str) -> tuple[str, str]:
    return (STREAM_SPLIT, "") if role == STREAM_SPLIT else (SPLITS[role], "last")


def side_rows(sel, metric, role, values, pair=PAIR):
    split, selection = where(role)
    return [row(s, sel, metric, v, split, selection, pair) for s, v in enumerate(values)]


def paired_rows(claim: C.Claim, direction: float) -> list[dict]:
    """Four seeds where a - b has the claim's expected sign (direction +1) or the opposite."""
    sign = (1.0 if claim.expect == "greater" else -1.0) * direction
    base = [0.50, 0.52, 0.49, 0.51]
    noise = [0.001, -0.002, 0.002, -0.001]
    a = [b + sign * (0.05 + e) for b, e in zip(base, noise, strict=True)]
    return side_rows(claim.a, claim.metric, claim.split, a) + side_rows(
        claim.b, claim.metric, claim.split, base
    )


def correlation_rows(claim: C.Claim, direction: float, augs: int = 6) -> list[dict]:
    """Points (one per student augmentation, two seeds each) where r(x, y) has the expected
    sign, or beats r(than, y), when ``direction`` is +1; the opposite when it is -1."""
    sign = 1.0 if claim.expect == "positive" else -1.0
    noise = [0.3, -0.2, 0.1, -0.3, 0.2, -0.1, 0.25, -0.15][:augs]
    scramble = [3.0, -1.0, 4.0, -1.5, 5.0, -9.0, 2.6, -5.3][:augs]  # uncorrelated with i
    rows = []
    for i in range(augs):
        sel = replace(claim.a, student_aug=f"aug{i}")
        y = float(i) + noise[i]
        if claim.than is None:
            x = sign * direction * float(i)
            axes = [(claim.x, x)]
        else:
            strong, weak = sign * float(i), scramble[i]
            x, t = (strong, weak) if direction > 0 else (weak, strong)
            axes = [(claim.x, x), (claim.than, t)]
        for axis, value in [*axes, (C.Axis(claim.metric, claim.split), y)]:
            rows += side_rows(sel, axis.metric, axis.split, [value, value + 0.01])
    return rows


def evaluate(claim: C.Claim, rows: list[dict]) -> C.Verdict:
    (verdict,) = C.verdict_rows(rows, [claim], SPLITS, "last", dataset="cifar100")
    return verdict


# --------------------------------------------------------------------- shipped claims


ALL = [(paper, c) for paper in PAPER_FILES for c in load(paper)]


@pytest.mark.parametrize(("paper", "claim"), ALL, ids=[f"{p}:{c.id}" for p, c in ALL])
def test_each_claim_holds_and_reverses_on_synthetic_results(paper, claim) -> None:
    build = correlation_rows if claim.test == C.CORRELATION else paired_rows
    holds = evaluate(claim, build(claim, +1.0))
    assert holds.verdict == "holds", (holds.verdict, holds.p, holds.diff_mean)
    reverse = evaluate(claim, build(claim, -1.0))
    assert reverse.verdict == "reversed", (reverse.verdict, reverse.p, reverse.diff_mean)
    if claim.a.starred:  # checked per pair (or teacher): the verdict names it
        assert holds.id in (f"{claim.id}[{PAIR[0]}/{PAIR[1]}]", f"{claim.id}[{PAIR[0]}]")


def test_claims_files_are_registered_and_every_report_with_claims_has_some() -> None:
    for paper in PAPER_FILES:
        assert PAPERS.get(paper).claims_file == f"{paper}.yaml"
    by_report = {c.report for _, c in ALL}
    for name in REPORTS.names():
        report = REPORTS.get(name)
        assert report.claims == (name in by_report), name
    assert REPORTS.get("das2020_same_augmentation").claims


def test_das_table_only_and_qualified_claims_are_marked() -> None:
    kinds = {c.id: c.kind for c in load("das2020")}
    assert kinds["teacher_human_kld_cutmix_lt_baseline"] == "table_only"
    for arch in ("lenet", "alexnet"):
        for aug in ("mixup", "cutmix"):
            assert kinds[f"{arch}_test_ece_{aug}_lt_baseline"] == "qualified"
    assert kinds["teacher_test_ece_mixup_lt_baseline"] == "text"
    same = [c for c in load("das2020") if c.report == "das2020_same_augmentation"]
    assert {c.b.teacher_aug for c in same} == {"standard", "cutout", "mixup", "cutmix"}
    assert all(c.b.student_aug == c.b.teacher_aug and c.a.teacher_aug == "none" for c in same)


@pytest.mark.parametrize("paper", ["wang2022", "choi2023"])
def test_quotes_are_verbatim(paper) -> None:
    texts = [p.read_text() for p in PAPER_TEXTS.glob(PAPER_FILES[paper])]
    if not texts:
        if os.environ.get("CI"):  # CI has ../shared beside the clone: a gap must fail there
            pytest.fail(f"paper texts not found under {PAPER_TEXTS}")
        pytest.skip(f"paper texts not found under {PAPER_TEXTS}")
    flat = [re.sub(r"\s+", " ", t) for t in texts]
    for c in load(paper):
        assert any(re.sub(r"\s+", " ", c.quote) in t for t in flat), c.id


@functools.cache
def _values_tables(paper: str) -> dict:
    return yaml.safe_load((VALUES_DIR / f"{paper}.yaml").read_text())["tables"]


def _paper_value(paper: str, tables: list[str], row_key: str, column: str) -> float:
    doc = _values_tables(paper)
    found = [
        doc[t]["values"][row_key][column] for t in tables if column in doc[t]["values"][row_key]
    ]
    assert len(found) == 1, (tables, row_key, column)
    return found[0]


WANG_TABLES = {
    "cifar100": {"loss": ["table3_cifar100_tstddev_loss", "table4_cifar100_tstddev_loss_cont"],
                 "accuracy": ["table1_cifar100_accuracy"]},
    "tiny_imagenet": {"loss": ["table5_tinyimagenet_tstddev_loss",
                               "table6_tinyimagenet_tstddev_loss_cont"],
                      "accuracy": ["table2_tinyimagenet_accuracy"]},
}  # fmt: skip
WANG_ROWS = {  # our (kd, student augmentation) -> the row of Tables 1-6
    ("kd_t4", "standard"): "kd", ("kd_t4", "append_cutmix"): "kd_cutmix",
    ("kd_t4", "append_cutmixpick_t"): "kd_cutmixpick",
    ("kd_t4_x4", "append_cutmixpick_t"): "kd_cutmixpick_prolonged",
    ("kd_t4_x2", "append_cutmixpick_t"): "kd_cutmixpick_prolonged",
    ("crd_kd", "standard"): "crd", ("crd_kd", "append_cutmixpick_t"): "crd_cutmixpick",
}  # fmt: skip


def test_wang_numbers_are_the_values_files() -> None:
    """Each copied number is the values file's, in our units (fractions, T. stddev x1)."""
    checked = 0
    for c in load("wang2022"):
        for dataset, per in (c.paper_by_dataset or {}).items():
            for at, numbers in per.items():
                teacher, student = at.split("/")
                for sel, number in zip(c.sides, numbers, strict=True):
                    if c.metric == "accuracy":
                        row_key = WANG_ROWS[(sel.kd, sel.student_aug)]
                        tables, column = WANG_TABLES[dataset]["accuracy"], f"{teacher}__{student}"
                        scale = 0.01
                    else:
                        row_key = sel.student_aug.removeprefix("append_")
                        tables = WANG_TABLES[dataset]["loss"]
                        column = f"{teacher}__tstddev" if c.metric == "t_stddev" else (
                            f"{teacher}__{student}__test_loss"
                        )  # fmt: skip
                        scale = 1e-3 if c.metric == "t_stddev" else 1.0
                    value = _paper_value("wang2022", tables, row_key, column) * scale
                    assert number == pytest.approx(value, rel=1e-9), (c.id, at)
                    checked += 1
    assert checked > 200


CHOI_T1_ROWS = {("rescaled_kd", "pmu10_a10"): "ours_pmu10", ("rescaled_kd", "pmu50_a10"):
                "ours_pmu50", ("rescaled_kd", "standard"): "ours_no_mixup",
                ("kd_t4", "standard"): "kd"}  # fmt: skip
CHOI_T3_COLUMNS = {("rescaled_kd", "pmu10_a10"): "ours", ("ce_only", "standard"): "vanilla",
                   ("kd_t4", "standard"): "kd", ("kd_t4", "fmu_a02"): "kd_mixup",
                   ("ickd", "standard"): "ickd", ("ickd", "fmu_a02"): "ickd_mixup",
                   ("crd", "standard"): "crd", ("crd", "fmu_a02"): "crd_mixup"}  # fmt: skip


def test_choi_numbers_are_the_values_files() -> None:
    checked = 0
    for c in load("choi2023"):
        for at, numbers in (c.paper_by_dataset or {}).get("cifar100", {}).items():
            for sel, number in zip(c.sides, numbers, strict=True):
                key = (sel.kd, sel.student_aug)
                if c.report == "choi2023_rescaled":
                    value = _paper_value("choi2023", ["table1_cifar100_accuracy"],
                                         CHOI_T1_ROWS[key], at.replace("/", "__"))  # fmt: skip
                elif c.report == "choi2023_robustness":
                    attack = "fgsm" if c.metric == "accuracy" else c.metric.split("_")[0]
                    eps = "0.0" if c.metric == "accuracy" else c.metric.split("_")[1]
                    value = _paper_value("choi2023", [f"table3_cifar100_{attack}"],
                                         f"eps_{eps}", CHOI_T3_COLUMNS[key])  # fmt: skip
                elif c.report == "choi2023_partial_mixup":
                    pmu = sel.student_aug.split("_")[0]
                    value = _paper_value(
                        "choi2023", ["table4_cifar100_alpha_pmu"], pmu, "alpha_1.0"
                    )
                else:  # Figure 4's accuracies, quoted in the text
                    assert (
                        c.id == "scenarios_t_s_gt_mix_t_mix_s"
                        and c.quote.count(f"{number * 100:.2f}%") == 1
                    )
                    continue
                assert number == pytest.approx(value / 100, rel=1e-9), (c.id, at)
                checked += 1
    assert checked > 30


def test_a_note_names_every_pair_whose_printed_numbers_go_against_the_claim() -> None:
    for paper in ("wang2022", "choi2023"):
        for c in load(paper):
            for dataset, per in (c.paper_by_dataset or {}).items():
                for at, (a, b) in per.items():
                    if (a > b) != (c.expect == "greater"):
                        assert c.note and f"{dataset} {at}" in c.note, (c.id, dataset, at)


# --------------------------------------------------------------------- the configs' cells


def known_metrics(config) -> set[str]:
    evaluation = config["evaluation"]
    return {
        "accuracy", "test_loss", "ece", "kld_human", "class_separability", "cohesion",
        "adhesion", "class_discrimination", "precision_macro", "recall_macro", "f1_macro",
        "mean_entropy", "t_stddev", "cov_mean", "cor_mean",
        *(f"vscore_{g}" for g in evaluation.get("vscore_groups", {})),
        *(attack_metric(m, e) for m in ATTACKS for e in evaluation["attacks"]["eps"]),
    }  # fmt: skip


def experiment_rows(config, name: str, metrics: set[str]) -> list[dict]:
    """One seed's synthetic long CSV of an experiment: every cell, split and metric the
    claims ask for (teacher statistics and attacks only where the experiment makes them)."""
    exp = config["experiments"][name]
    rng = np.random.default_rng(0)
    splits = dict.fromkeys(s for s in exp["eval_splits"].values() if s)
    rows = []
    for cell in plan.experiment_cells(config, name):
        if cell.seed != exp["seeds"][0]:
            continue
        ident = {k: "" if v is None else str(v) for k, v in cell.identity().items()}
        base = {"experiment": name, **{k: ident[k] for k in LONG_COLUMNS if k in ident}}
        for metric in metrics:
            if metric in ("t_stddev", "cov_mean", "cor_mean"):
                if not (exp.get("teacher_stats") and cell.role == "student"):
                    continue
                places = [(STREAM_SPLIT, "")]
            else:
                if metric.split("_")[0] in ATTACKS and not exp.get("attacks"):
                    continue
                places = [(s, "last") for s in splits]
            for split, selection in places:
                r = {**base, "selection": selection, "split": split, "metric": metric}
                rows.append({**r, "value": repr(float(rng.random()))})
    return [{k: r[k] for k in LONG_COLUMNS} for r in rows]


def groups_found(config, experiments: list[str], claims: list[C.Claim]) -> dict[str, set[str]]:
    """Claim ids -> the experiments where the claim's groups exist (any verdict but
    'not in this experiment'); no selector may be ambiguous there (ClaimError)."""
    found: dict[str, set[str]] = {c.id: set() for c in claims}
    for name in experiments:
        exp = config["experiments"][name]
        mine = [c for c in claims if c.report == exp["report"]]
        if not mine:
            continue
        used = {c.metric for c in mine} | {a.metric for c in mine for a in (c.x, c.than) if a}
        rows = experiment_rows(config, name, used)
        splits = plan.present_splits(exp)
        for c in mine:
            for v in C.verdict_rows(rows, [c], splits, "last", report=exp["report"]):
                if v.verdict != C.NOT_IN_EXPERIMENT:
                    found[c.id].add(name)
    return found


@pytest.fixture(scope="module")
def paper_config():
    return plan.load_layered_config([ROOT / "config/config.yaml"])


@pytest.mark.parametrize("paper", list(PAPER_FILES))
def test_every_claim_names_cells_of_a_paper_experiment(paper, paper_config) -> None:
    claims = load(paper)
    metrics = known_metrics(paper_config)
    for c in claims:
        assert c.report in REPORTS.names(), c.id
        assert {c.metric} | {a.metric for a in (c.x, c.than) if a} <= metrics, c.id
    found = groups_found(paper_config, list(paper_config["experiments"]), claims)
    assert not [cid for cid, where in found.items() if not where]


@pytest.mark.parametrize("layers", [["demo.yaml"], ["demo.yaml", "demo_all.yaml"]])
def test_the_demo_tests_claims_of_every_report_it_renders(layers: list[str]) -> None:
    config = plan.load_layered_config(
        [ROOT / "config/config.yaml", *(ROOT / "config" / layer for layer in layers)]
    )
    claims = [c for paper in PAPER_FILES for c in load(paper)]
    found = groups_found(config, config["run"], claims)
    reports = {config["experiments"][n]["report"] for n in config["run"]}
    for report in reports:
        mine = [cid for cid, where in found.items() if where and
                next(c for c in claims if c.id == cid).report == report]  # fmt: skip
        assert mine, report
    if len(layers) == 1:
        return
    # Most of Wang's and Choi's claims have their groups in the whole demo (per resnet20 ->
    # resnet8).
    for paper in ("wang2022", "choi2023"):
        ids = [c.id for c in load(paper)]
        assert sum(bool(found[i]) for i in ids) >= 0.6 * len(ids), paper


# --------------------------------------------------------------------- correlation claims


def by_hand_pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    r = sxy / math.sqrt(sxx * syy)
    t = r * math.sqrt((n - 2) / (1 - r * r))
    p = 2 * stats.t.sf(abs(t), n - 2)
    half = 1.959963984540054 / math.sqrt(n - 3)
    return r, t, p, math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)


def test_correlation_test_matches_hand_arithmetic() -> None:
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 5.0, 4.0, 5.0]
    res = C.correlation_test(x, y)
    r, t, p, lo, hi = by_hand_pearson(x, y)
    assert r == pytest.approx(0.7745966692)  # sxy = 6, sxx = 10, syy = 6: 6 / sqrt(60)
    assert (res["r"], res["stat"], res["p"]) == (
        pytest.approx(r),
        pytest.approx(t),
        pytest.approx(p),
    )
    assert (res["ci_low"], res["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert res["diff"] == res["r"] and math.isnan(res["r_than"])


def test_dependent_correlations_match_meng_rosenthal_rubin() -> None:
    y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    x = [1.2, 1.9, 3.3, 3.8, 5.1, 6.2, 6.8, 8.1]
    than = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0]
    res = C.correlation_test(x, y, than)
    r1, r2 = stats.pearsonr(x, y)[0], stats.pearsonr(than, y)[0]
    rx = stats.pearsonr(x, than)[0]
    n = len(y)
    rbar2 = (r1**2 + r2**2) / 2
    f = min((1 - rx) / (2 * (1 - rbar2)), 1)
    h = (1 - f * rbar2) / (1 - rbar2)
    z = (math.atanh(r1) - math.atanh(r2)) * math.sqrt((n - 3) / (2 * (1 - rx) * h))
    assert res["stat"] == pytest.approx(z) and res["p"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert (res["r"], res["r_than"], res["diff"]) == (
        pytest.approx(r1), pytest.approx(r2), pytest.approx(r1 - r2))  # fmt: skip
    same = C.correlation_test(x, y, x)  # one variable twice: no difference
    assert same["stat"] == 0.0 and same["p"] == 1.0


def test_correlation_test_conventions() -> None:
    assert all(math.isnan(v) for v in C.correlation_test([1, 2], [3, 4]).values())
    assert math.isnan(C.correlation_test([1, 2, 3], [1, 2, 3], [3, 1, 2])["p"])  # n < 4
    flat = C.correlation_test([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(flat["r"]) and flat["p"] == 1.0
    perfect = C.correlation_test([1, 2, 3, 4], [2, 4, 6, 8])
    assert perfect["r"] == pytest.approx(1.0) and perfect["p"] < 1e-6


def correlation_claim(**kw) -> C.Claim:
    entry = {
        "id": "corr", "test": "correlation", "claim": "x tracks y", "source": "s",
        "quote": "q", "x": {"metric": "t_stddev", "split": STREAM_SPLIT},
        "metric": "test_loss", "split": "test", "expect": "positive",
        "group": {"model": "*", "teacher_arch": "*", "teacher_aug": "standard", "kd": "kd_t4"},
    } | kw  # fmt: skip
    return C.parse_claims([entry])[0]


def points(xs, ys, seeds=(0,), pair=PAIR):
    rows = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        sel = C.Selector(pair[1], "standard", f"aug{i}", "kd_t4", pair[0])
        rows += [row(s, sel, "t_stddev", x, STREAM_SPLIT, "", pair) for s in seeds]
        rows += [row(s, sel, "test_loss", y, pair=pair) for s in seeds]
    return rows


def test_correlation_claim_uses_the_seed_means_of_each_point_per_pair() -> None:
    xs, ys = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 5.0, 4.0, 5.0]
    rows = points(xs, ys, seeds=(0, 1))
    rows += points([5.0, 4.0, 3.0, 2.0, 1.0], [2.0, 4.0, 5.0, 4.0, 5.1], pair=("wrn_40_2", "vgg8"))
    # seed 1 of each point moved by +1 in x: the point's mean moves by 0.5, r is unchanged
    rows = [r | {"value": repr(float(r["value"]) + 1.0)} if r["seed"] == "1" and
            r["metric"] == "t_stddev" else r for r in rows]  # fmt: skip
    v1, v2 = C.verdict_rows(rows, [correlation_claim()], SPLITS, "last")
    assert v1.id == "corr[resnet56/resnet20]" and v2.id == "corr[wrn_40_2/vgg8]"
    r, t, p, lo, hi = by_hand_pearson(xs, ys)
    assert (v1.a_mean, v1.t, v1.p, v1.n) == (
        pytest.approx(r),
        pytest.approx(t),
        pytest.approx(p),
        5,
    )
    assert (v1.ci_low, v1.ci_high, v1.b_mean) == (pytest.approx(lo), pytest.approx(hi), 0.0)
    assert v1.verdict == "not significant" and v1.sign_agrees is True  # p = 0.124
    assert v2.a_mean < 0 and v2.sign_agrees is False
    assert v1.split_name == "test" and v1.test == "correlation"


def test_correlation_verdicts() -> None:
    up = points([1, 2, 3, 4, 5, 6], [1.1, 2.0, 3.2, 3.9, 5.1, 6.0])
    down = points([6, 5, 4, 3, 2, 1], [1.1, 2.0, 3.2, 3.9, 5.1, 6.0])
    assert C.verdict_rows(up, [correlation_claim()], SPLITS, "last")[0].verdict == "holds"
    assert C.verdict_rows(down, [correlation_claim()], SPLITS, "last")[0].verdict == "reversed"
    negative = correlation_claim(expect="negative")
    assert C.verdict_rows(down, [negative], SPLITS, "last")[0].verdict == "holds"
    two = points([1, 2], [1, 2])
    assert C.verdict_rows(two, [correlation_claim()], SPLITS, "last")[0].verdict == (
        "untested (n=2)"
    )
    no_stats = [r for r in up if r["split"] != STREAM_SPLIT]
    (v,) = C.verdict_rows(no_stats, [correlation_claim()], SPLITS, "last")
    assert v.verdict == "not in this experiment" and v.n == 0
    assert C.is_verdict("untested (n=2)") and not C.is_verdict("untested")


def test_correlation_claim_against_a_baseline_statistic() -> None:
    claim = correlation_claim(than={"metric": "cov_mean", "split": STREAM_SPLIT})
    y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    strong = [1.1, 2.0, 2.9, 4.1, 5.0, 6.1, 6.9, 8.0]
    weak = [3.0, -1.0, 4.0, -1.5, 5.0, -9.0, 2.6, -5.3]
    rows = points(strong, y)
    sels = [C.Selector(PAIR[1], "standard", f"aug{i}", "kd_t4", PAIR[0]) for i in range(8)]
    rows += [row(0, s, "cov_mean", w, STREAM_SPLIT, "") for s, w in zip(sels, weak, strict=True)]
    (v,) = C.verdict_rows(rows, [claim], SPLITS, "last")
    assert v.verdict == "holds" and v.b_label == "r(cov_mean, test_loss)"
    assert v.diff_mean == pytest.approx(v.a_mean - v.b_mean) and math.isnan(v.ci_low)
    assert v.t == pytest.approx(C.correlation_test(strong, y, weak)["stat"])


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"group": {"model": "teacher", "teacher_aug": "standard"}}, r"'group' must select"),
        ({"group": {"model": "x", "teacher_aug": "s", "student_aug": "a"}}, r"student_aug free"),
        ({"expect": "greater"}, r"'expect' must be one of \('positive', 'negative'\)"),
        ({"x": {"metric": "t_stddev"}}, r"'x' must be a mapping with keys metric, split"),
        ({"paper": {"a": 1, "b": 2}}, r"unknown key 'paper' for a correlation claim"),
        ({"test": "anova"}, r"'test' must be one of"),
        ({"kind": "rumour"}, r"'kind' must be one of"),
    ],
)
def test_bad_correlation_claims_name_the_problem(patch, message) -> None:
    with pytest.raises(C.ClaimError, match=message):
        correlation_claim(**patch)


# --------------------------------------------------------------------- stars, kinds, numbers


def paired_claim(**kw) -> C.Claim:
    entry = {
        "id": "p", "claim": "a beats b", "source": "s", "quote": "q", "metric": "accuracy",
        "split": "test", "expect": "greater",
        "a": {"model": "*", "teacher_arch": "*", "teacher_aug": "standard", "kd": "kd_t1"},
        "b": {"model": "*", "teacher_arch": "*", "teacher_aug": "standard", "kd": "kd_t4"},
    } | kw  # fmt: skip
    return C.parse_claims([entry])[0]


def test_starred_claims_run_per_pair_with_the_datasets_numbers() -> None:
    claim = paired_claim(paper={"cifar100": {"resnet56/resnet20": [0.71, 0.70]}})
    rows = []
    for pair in (PAIR, ("resnet110", "resnet32"), ("vgg13", "vgg8")):
        rows += side_rows(claim.a, "accuracy", "test", [0.7, 0.72, 0.71], pair)
        if pair != ("vgg13", "vgg8"):  # only one side there: not a pair of this claim
            rows += side_rows(claim.b, "accuracy", "test", [0.6, 0.63, 0.6], pair)
    verdicts = C.verdict_rows(rows, [claim], SPLITS, "last", dataset="cifar100")
    assert [v.id for v in verdicts] == ["p[resnet56/resnet20]", "p[resnet110/resnet32]"]
    assert all(v.verdict == "holds" for v in verdicts)
    assert (verdicts[0].paper_a, verdicts[0].paper_b) == (0.71, 0.70)
    assert verdicts[1].paper_a is None  # no number printed for that pair
    assert "resnet20 ← resnet56 standard teacher (kd=kd_t1)" in verdicts[0].a_label
    other = C.verdict_rows(rows, [claim], SPLITS, "last", dataset="tiny_imagenet")
    assert all(v.paper_a is None for v in other)
    (absent,) = C.verdict_rows(rows[:0], [claim], SPLITS, "last")
    assert absent.id == "p" and absent.verdict == "not in this experiment"
    # evaluate_claim alone does not expand: a starred claim there is absent, not pooled
    assert C.evaluate_claim(rows, claim, SPLITS, "last").verdict == "not in this experiment"


def test_starred_teacher_claims_run_per_teacher() -> None:
    claim = paired_claim(
        a={"model": "teacher", "teacher_arch": "*", "teacher_aug": "fmu_a10"},
        b={"model": "teacher", "teacher_arch": "*", "teacher_aug": "standard"},
    )
    rows = []
    for pair in (("resnet20", ""), ("resnet110", "")):
        rows += side_rows(claim.a, "accuracy", "test", [0.8, 0.82], pair)
        rows += side_rows(claim.b, "accuracy", "test", [0.7, 0.71], pair)
    assert [v.id for v in C.verdict_rows(rows, [claim], SPLITS, "last")] == [
        "p[resnet20]", "p[resnet110]"]  # fmt: skip


def test_teacher_statistics_rows_have_no_weight_selection() -> None:
    claim = paired_claim(metric="t_stddev", split=STREAM_SPLIT, expect="less")
    rows = side_rows(claim.a, "t_stddev", STREAM_SPLIT, [0.004, 0.0041, 0.0042])
    rows += side_rows(claim.b, "t_stddev", STREAM_SPLIT, [0.005, 0.0052, 0.0051])
    for selection in ("last", "best_val"):
        (v,) = C.verdict_rows(rows, [claim], SPLITS, selection)
        assert v.verdict == "holds" and v.split_name == STREAM_SPLIT


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"b": {"model": "resnet8", "teacher_arch": "*", "teacher_aug": "s"}}, r"star the same"),
        ({"a": {"model": "x", "teacher_aug": "*"}}, r"'\*' in 'a' applies to"),
        (
            {
                "paper": {"cifar100": {"a/b": [1, 2]}},
                "a": {"model": "x", "teacher_aug": "s"},
                "b": {"model": "y", "teacher_aug": "s"},
            },
            r"need a selector with '\*'",
        ),
        ({"paper": {"cifar100": {"resnet56": [1, 2]}}}, r"one value per starred key"),
        ({"paper": {"cifar100": {"a/b": [1]}}}, r"must be \[a, b\]"),
        ({"paper": {"cifar100": {"a/b": ["x", 2]}}}, r"must be a number"),
    ],
)
def test_bad_stars_and_numbers_name_the_problem(patch, message) -> None:
    with pytest.raises(C.ClaimError, match=message):
        paired_claim(**patch)


def test_markdown_lists_table_only_and_qualified_claims_apart_with_notes(tmp_path) -> None:
    entries = []
    for cid, kind in (("said", "text"), ("table", "table_only"), ("hedged", "qualified")):
        entries.append({
            "id": cid, "claim": f"{cid} claim", "source": "s", "quote": "q", "kind": kind,
            "metric": "accuracy", "split": "test", "expect": "greater",
            "a": {"model": "lenet", "teacher_aug": "none"},
            "b": {"model": "lenet", "teacher_aug": "cutmix"}, "note": f"about {cid}",
        })  # fmt: skip
    claims = C.parse_claims(entries)
    sel_a, sel_b = claims[0].a, claims[0].b
    rows = side_rows(sel_a, "accuracy", "test", [0.7, 0.72, 0.71])
    rows += side_rows(sel_b, "accuracy", "test", [0.6, 0.6, 0.62])
    write_long_csv(tmp_path / "m.csv", rows)
    exp = {"report": None, "eval_splits": SPLITS}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(entries))
    verdicts = C.render_claims(
        tmp_path / "m.csv", exp, "last", tmp_path / "claims", tmp_path / "c.yaml"
    )
    assert [v.kind for v in verdicts] == ["text", "table_only", "qualified"]
    md = (tmp_path / "claims.md").read_text()
    first, rest = md.split(C.NOT_COUNTED)
    assert "| `said` (expects a > b)" in first and "`table`" not in first
    assert "| `table` (expects a > b; table-only observation)" in rest
    assert "| `hedged` (expects a > b; qualified by the paper)" in rest
    assert "- `hedged`: about hedged" in rest
    assert "kind" in (tmp_path / "claims.csv").read_text().splitlines()[0]


def test_render_claims_of_a_starred_paper_claim_shows_its_numbers_only_on_its_dataset(
    tmp_path,
) -> None:
    claim = next(c for c in load("wang2022") if c.id == "acc_kd_cutmix_gt_kd")
    pair = ("wrn_40_2", "wrn_16_2")
    rows = side_rows(claim.a, "accuracy", "test", [0.76, 0.755, 0.757], pair)
    rows += side_rows(claim.b, "accuracy", "test", [0.75, 0.748, 0.749], pair)
    write_long_csv(tmp_path / "m.csv", rows)
    exp = {"report": "wang2022_accuracy", "eval_splits": {"test": "test"}, "dataset": "cifar100"}
    verdicts = C.render_claims(tmp_path / "m.csv", exp, "last", tmp_path / "claims",
                               CLAIMS_DIR / "wang2022.yaml")  # fmt: skip
    mine = next(v for v in verdicts if v.id == "acc_kd_cutmix_gt_kd[wrn_40_2/wrn_16_2]")
    assert mine.verdict == "holds" and (mine.paper_a, mine.paper_b) == (0.7534, 0.7492)
    assert "(paper 0.7534)" in (tmp_path / "claims.md").read_text()
    for other in ({**exp, "dataset": "digits_rd"}, {**exp, "compare_with_paper": False}):
        verdicts = C.render_claims(tmp_path / "m.csv", other, "last", tmp_path / "claims",
                                   CLAIMS_DIR / "wang2022.yaml")  # fmt: skip
        assert all(v.paper_a is None for v in verdicts)
    # the other reports' claims are not listed; the absent groups are
    ids = {v.id.split("[")[0] for v in verdicts}
    assert "da_test_loss_cutmix_lt_mixup" not in ids and "acc_crd_cutmixpick_gt_crd" in ids


def test_report_caption_counts_the_papers_claims_apart_from_observations(tmp_path) -> None:
    from kdaug.render import ReportCaption

    claims = tmp_path / "claims.csv"
    claims.write_text(
        "id,verdict,kind\na,holds,text\nb,reversed,text\nc,holds,table_only\nd,holds,qualified\n"
    )
    assert ReportCaption("claim", "shows", claims_csv=str(claims)).found() == (
        "claim verdicts on our data: 1 holds, 1 reversed; "
        "table-only or qualified observations: 2 holds"
    )


def test_correlation_claim_leaves_out_excluded_augmentations() -> None:
    xs, ys = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 5.0, 4.0, 5.0]
    rows = points(xs, ys)
    bad = C.Selector(PAIR[1], "standard", "append_constant", "kd_t4", PAIR[0])
    rows += [row(0, bad, "t_stddev", 0.0, STREAM_SPLIT, ""), row(0, bad, "test_loss", 9.0)]
    (kept,) = C.verdict_rows(rows, [correlation_claim()], SPLITS, "last")
    claim = correlation_claim(exclude=["append_constant"])
    (left_out,) = C.verdict_rows(rows, [claim], SPLITS, "last")
    assert kept.n == 6 and kept.a_mean < 0
    assert left_out.n == 5 and left_out.a_mean == pytest.approx(by_hand_pearson(xs, ys)[0])
    with pytest.raises(C.ClaimError, match="'exclude' must be a list"):
        correlation_claim(exclude="append_constant")


@pytest.mark.parametrize("layers", [[], ["demo.yaml", "demo_all.yaml"]])
def test_wang_correlations_leave_out_every_sanity_check_scheme(layers: list[str]) -> None:
    """The tables leave the constant-image scheme out of Pearson's r; so do the claims."""
    from kdaug.papers.wang2022 import sanity_checks

    config = plan.load_layered_config(
        [ROOT / "config/config.yaml", *(ROOT / "config" / layer for layer in layers)]
    )
    correlations = [c for c in load("wang2022") if c.test == C.CORRELATION]
    for name in config["run"]:
        if config["experiments"][name]["report"] == "wang2022_da":
            sanity = sanity_checks(plan.experiment_view(config, name))
            assert sanity and all(sanity <= set(c.exclude) for c in correlations), name
