"""Claims evaluator: verdicts on constructed long-CSV rows, checked by hand arithmetic."""

import csv
import math
import os
import re
from pathlib import Path

import pytest
import yaml
from scipy import stats

from kdaug.io import LONG_COLUMNS, write_long_csv
from kdaug.papers import CLAIMS_DIR
from kdaug.report import claims as C
from kdaug.report.registry import REPORTS

DAS_CLAIMS = CLAIMS_DIR / "das2020.yaml"

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT.parent / "shared" / "papers"
SPLITS = {"test": "test", "shifted": "cinic10"}
METRICS = {
    "accuracy", "test_loss", "ece", "kld_human", "class_separability", "cohesion", "adhesion",
    "class_discrimination", "precision_macro", "recall_macro", "f1_macro",
}  # fmt: skip


def row(seed, model, teacher_aug, value, *, metric="accuracy", split="test", selection="last",
        student_aug="none", kd="hinton_t20", teacher_arch="resnet18"):  # fmt: skip
    """One long-CSV row as read_long_csv returns it (all strings)."""
    student = model != "teacher"
    r = {
        "experiment": "exp", "dataset": "cifar10", "seed": str(seed),
        "role": "student" if student else "teacher", "teacher_arch": teacher_arch,
        "teacher_aug": teacher_aug, "kd": kd if student else "",
        "student_arch": model if student else "", "student_aug": student_aug if student else "",
        "selection": selection, "split": split, "metric": metric, "value": repr(float(value)),
    }  # fmt: skip
    assert tuple(r) == LONG_COLUMNS
    return r


def claim(expect="greater", a=None, b=None, **kw):
    entry = {
        "id": "c1", "claim": "a beats b", "source": "test", "quote": "q",
        "metric": "accuracy", "split": "test",
        "a": a or {"model": "lenet", "teacher_aug": "none"},
        "b": b or {"model": "lenet", "teacher_aug": "cutmix"},
        "expect": expect,
    } | kw  # fmt: skip
    return C.parse_claims([entry])[0]


def paired_rows(a_vals, b_vals, model="lenet", **kw):
    rows = [row(s, model, "none", v, **kw) for s, v in enumerate(a_vals)]
    return rows + [row(s, model, "cutmix", v, **kw) for s, v in enumerate(b_vals)]


def by_hand(d):
    """Paired t statistic, two-sided p and 95% CI from the differences, without ttest_rel."""
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    t = mean / se
    p = 2 * stats.t.sf(abs(t), n - 1)
    q = stats.t.ppf(0.975, n - 1)
    return mean, t, p, mean - q * se, mean + q * se, mean / sd


def test_clear_holds_matches_hand_computation() -> None:
    a, b = [0.70, 0.72, 0.71], [0.60, 0.63, 0.615]
    v = C.evaluate_claim(paired_rows(a, b), claim(), SPLITS, "last")
    _, t, p, lo, hi, dz = by_hand([x - y for x, y in zip(a, b, strict=True)])
    assert v.verdict == "holds" and v.n == 3 and v.sign_agrees is True
    assert v.diff_mean == pytest.approx(0.095)
    assert (v.t, v.p) == (pytest.approx(t), pytest.approx(p))
    assert (v.ci_low, v.ci_high, v.d_z) == (pytest.approx(lo), pytest.approx(hi), pytest.approx(dz))
    # d = (0.10, 0.09, 0.095): sd = 0.005, t = 0.095 / (0.005 / sqrt 3) = 32.909
    assert v.t == pytest.approx(0.095 / (0.005 / math.sqrt(3)))
    assert v.d_z == pytest.approx(19.0)
    assert v.ci_low == pytest.approx(0.095 - 4.302653 * 0.005 / math.sqrt(3), abs=1e-6)
    assert (v.a_mean, v.b_mean) == (pytest.approx(0.71), pytest.approx(0.615))
    assert v.split_name == "test" and v.metric == "accuracy"


def test_reversed_when_significant_in_the_opposite_direction() -> None:
    a, b = [0.60, 0.62, 0.61, 0.605], [0.70, 0.71, 0.72, 0.70]
    v = C.evaluate_claim(paired_rows(a, b), claim(), SPLITS, "last")
    _, t, p, lo, hi, _ = by_hand([x - y for x, y in zip(a, b, strict=True)])
    assert v.verdict == "reversed" and v.sign_agrees is False and v.n == 4
    assert (v.t, v.p, v.ci_low, v.ci_high) == tuple(pytest.approx(x) for x in (t, p, lo, hi))
    assert v.ci_high < 0
    # The same data under `expect: less` hold.
    assert C.evaluate_claim(paired_rows(a, b), claim("less"), SPLITS, "last").verdict == "holds"


def test_noisy_mixed_signs_are_not_significant() -> None:
    a, b = [0.70, 0.60, 0.68], [0.65, 0.66, 0.66]
    v = C.evaluate_claim(paired_rows(a, b), claim(), SPLITS, "last")
    _, t, p, lo, hi, _ = by_hand([0.05, -0.06, 0.02])
    assert v.verdict == "not significant" and p > 0.05
    assert (v.t, v.p, v.ci_low, v.ci_high) == tuple(pytest.approx(x) for x in (t, p, lo, hi))
    assert v.ci_low < 0 < v.ci_high


def test_alpha_decides_significance() -> None:
    a, b = [0.70, 0.60, 0.68], [0.65, 0.66, 0.66]
    v = C.evaluate_claim(paired_rows(a, b), claim(), SPLITS, "last", alpha=0.99)
    assert v.p < 0.99 and v.verdict == "holds" and v.alpha == 0.99


def test_one_seed_is_untested_but_reports_the_sign() -> None:
    v = C.evaluate_claim(paired_rows([0.7], [0.6]), claim(), SPLITS, "last")
    assert v.verdict == "untested (n=1)" and v.n == 1
    assert v.diff_mean == pytest.approx(0.1) and v.sign_agrees is True
    assert all(math.isnan(x) for x in (v.p, v.t, v.ci_low, v.ci_high, v.d_z))
    v = C.evaluate_claim(paired_rows([0.6], [0.7]), claim(), SPLITS, "last")
    assert v.verdict == "untested (n=1)" and v.sign_agrees is False


def test_only_seeds_present_in_both_groups_are_paired() -> None:
    rows = paired_rows([0.70, 0.72, 0.71], [0.60, 0.63])  # seed 2 lacks b
    v = C.evaluate_claim(rows, claim(), SPLITS, "last")
    assert v.n == 2 and v.a_mean == pytest.approx(0.71)
    no_overlap = [row(0, "lenet", "none", 0.7), row(1, "lenet", "cutmix", 0.6)]
    v = C.evaluate_claim(no_overlap, claim(), SPLITS, "last")
    assert v.verdict == "untested (n=0)" and v.sign_agrees is None


def test_zero_variance_difference_is_significant_in_its_sign() -> None:
    a, b = [0.75, 0.50, 0.25], [0.5, 0.25, 0.0]  # d = 0.25 exactly, three times
    v = C.evaluate_claim(paired_rows(a, b), claim(), SPLITS, "last")
    assert v.verdict == "holds" and v.p == 0.0 and v.t == math.inf and v.d_z == math.inf
    assert v.ci_low == v.ci_high == pytest.approx(0.25)
    v = C.evaluate_claim(paired_rows(a, b), claim("less"), SPLITS, "last")
    assert v.verdict == "reversed" and v.p == 0.0
    # Equal up to floating-point rounding counts as equal: 0.7-0.6 != 0.8-0.7 in binary.
    v = C.evaluate_claim(paired_rows([0.7, 0.8, 0.9], [0.6, 0.7, 0.8]), claim(), SPLITS, "last")
    assert v.verdict == "holds" and v.p == 0.0


def test_all_zero_differences_are_not_significant() -> None:
    a = [0.7, 0.6, 0.65]
    v = C.evaluate_claim(paired_rows(a, a), claim(), SPLITS, "last")
    assert v.verdict == "not significant" and v.p == 1.0 and v.diff_mean == 0.0
    assert v.sign_agrees is None and math.isnan(v.t) and v.ci_low == v.ci_high == 0.0


def test_missing_groups_are_not_in_this_experiment() -> None:
    rows = paired_rows([0.7, 0.72], [0.6, 0.61])
    absent = [
        claim(a={"model": "alexnet", "teacher_aug": "none"}),  # no alexnet students
        claim(b={"model": "lenet", "teacher_aug": "mixup"}),  # no mixup teacher
        claim(metric="ece"),  # metric not collected
        claim(split="shifted"),  # role resolves, but no rows on cinic10
        claim(split="human"),  # role not in eval_splits
    ]
    for c in absent:
        v = C.evaluate_claim(rows, c, SPLITS, "last")
        assert v.verdict == "not in this experiment" and v.n == 0 and math.isnan(v.p)
    # A claim scoped to another report kind is skipped only when the report is given.
    scoped = claim(report="das2020_mnist")
    assert C.evaluate_claim(rows, scoped, SPLITS, "last", report="das2020").verdict == (
        "not in this experiment"
    )
    assert C.evaluate_claim(rows, scoped, SPLITS, "last").n == 2
    # Another selection is also absent.
    assert C.evaluate_claim(rows, claim(), SPLITS, "best_val").verdict == "not in this experiment"


def test_ambiguous_selector_is_an_error_naming_the_claim() -> None:
    rows = paired_rows([0.7, 0.72], [0.6, 0.61])
    rows += paired_rows([0.5, 0.52], [0.4, 0.41], student_aug="cutmix")
    with pytest.raises(C.ClaimError, match=r"'c1'.*student_aug"):
        C.evaluate_claim(rows, claim(), SPLITS, "last")
    pinned = claim(
        a={"model": "lenet", "teacher_aug": "none", "student_aug": "cutmix"},
        b={"model": "lenet", "teacher_aug": "cutmix", "student_aug": "cutmix"},
    )
    v = C.evaluate_claim(rows, pinned, SPLITS, "last")
    assert v.n == 2 and v.a_mean == pytest.approx(0.51)
    two_kd = paired_rows([0.7, 0.72], [0.6, 0.61]) + paired_rows([0.7], [0.6], kd="other")
    with pytest.raises(C.ClaimError, match=r"'c1'.*kd"):
        C.evaluate_claim(two_kd, claim(), SPLITS, "last")
    two_teachers = [
        row(0, "teacher", "none", 0.9),
        row(0, "teacher", "none", 0.8, teacher_arch="x"),
    ]
    teacher_claim = claim(a={"model": "teacher", "teacher_aug": "none"})
    with pytest.raises(C.ClaimError, match=r"'c1'.*teacher_arch"):
        C.evaluate_claim(two_teachers, teacher_claim, SPLITS, "last")


def test_duplicate_seed_is_an_error() -> None:
    rows = [*paired_rows([0.7, 0.72], [0.6, 0.61]), row(0, "lenet", "none", 0.5)]
    with pytest.raises(C.ClaimError, match=r"'c1'.*two values for seed 0"):
        C.evaluate_claim(rows, claim(), SPLITS, "last")


def test_teacher_and_student_rows_are_kept_apart() -> None:
    rows = paired_rows([0.7, 0.72, 0.71], [0.6, 0.63, 0.615])
    rows += paired_rows([0.95, 0.96, 0.97], [0.85, 0.84, 0.86], model="teacher")
    t = claim(
        a={"model": "teacher", "teacher_aug": "cutmix"},
        b={"model": "teacher", "teacher_aug": "none"},
    )
    v = C.evaluate_claim(rows, t, SPLITS, "last")
    assert v.verdict == "reversed" and v.a_mean == pytest.approx(0.85)
    assert C.evaluate_claim(rows, claim(), SPLITS, "last").a_mean == pytest.approx(0.71)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"metrc": "accuracy"}, r"'c1'.*unknown key 'metrc'"),
        ({"expect": "bigger"}, r"'c1'.*'expect'"),
        ({"a": {"model": "lenet"}}, r"'c1'.*'a' lacks key 'teacher_aug'"),
        ({"b": {"model": "lenet", "teacher_aug": "none", "aug": "x"}}, r"'c1'.*unknown key 'aug'"),
        ({"a": {"model": "teacher", "teacher_aug": "none", "kd": "k"}}, r"'c1'.*'kd'.*students"),
        ({"paper": {"a": "high"}}, r"'c1'.*paper\.a"),
        ({"quote": ""}, r"'c1'.*'quote'"),
    ],
)
def test_load_claims_names_the_claim_and_the_bad_key(tmp_path, patch, message) -> None:
    entry = {
        "id": "c1", "claim": "x", "source": "s", "quote": "q", "metric": "accuracy",
        "split": "test", "a": {"model": "lenet", "teacher_aug": "none"},
        "b": {"model": "lenet", "teacher_aug": "cutmix"}, "expect": "greater",
    } | patch  # fmt: skip
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump([entry]))
    with pytest.raises(C.ClaimError, match=message):
        C.load_claims(path)


def test_load_claims_rejects_missing_keys_and_duplicate_ids(tmp_path) -> None:
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump([{"id": "c9", "claim": "x"}]))
    with pytest.raises(C.ClaimError, match=r"'c9'.*missing key 'source'"):
        C.load_claims(path)
    ok = {
        "id": "c2", "claim": "x", "source": "s", "quote": "q", "metric": "accuracy",
        "split": "test", "a": {"model": "lenet", "teacher_aug": "none"},
        "b": {"model": "lenet", "teacher_aug": "cutmix"}, "expect": "greater",
    }  # fmt: skip
    path.write_text(yaml.safe_dump([ok, ok]))
    with pytest.raises(C.ClaimError, match=r"'c2'.*duplicate"):
        C.load_claims(path)


def test_write_verdicts_csv_and_markdown(tmp_path) -> None:
    rows = paired_rows([0.70, 0.72, 0.71], [0.60, 0.63, 0.615])
    claims = [claim(paper={"a": 0.652, "b": 0.621}), claim(split="human")]
    verdicts = C.verdict_rows(rows, claims, SPLITS, "last")
    C.write_verdicts(verdicts, tmp_path / "claims")
    with open(tmp_path / "claims.csv", newline="") as fh:
        out = list(csv.DictReader(fh))
    assert [r["verdict"] for r in out] == ["holds", "not in this experiment"]
    assert float(out[0]["p"]) == pytest.approx(verdicts[0].p) and out[0]["paper_a"] == "0.652"
    md = (tmp_path / "claims.md").read_text()
    header = "| claim | metric (split) | a | b | diff [95% CI] | p | n | verdict |"
    assert header in md
    lines = [line for line in md.splitlines() if line.startswith("| `c1`")]
    assert len(lines) == 2 and all(line.count(" | ") == 7 for line in lines)
    assert "+0.095 [+0.083, +0.107]" in lines[0] and "**holds**" in lines[0]
    assert "accuracy (test: test)" in lines[0]
    assert "lenet ← none teacher: 0.710 (paper 0.652)" in lines[0]
    assert lines[1].endswith("| — | — | 0 | not in this experiment |")
    assert not list(tmp_path.glob(".*.tmp"))


def test_render_claims_from_a_long_csv(tmp_path) -> None:
    rows = paired_rows([0.70, 0.72, 0.71], [0.60, 0.63, 0.615])
    rows += [row(0, "lenet", "none", 0.5, split="cinic10")]
    write_long_csv(tmp_path / "metrics.csv", rows)
    exp_cfg = {"report": "das2020", "eval_splits": SPLITS}
    verdicts = C.render_claims(
        tmp_path / "metrics.csv", exp_cfg, "last", tmp_path / "out/claims", DAS_CLAIMS
    )
    by_id = {v.id: v.verdict for v in verdicts}
    assert by_id["lenet_test_acc_baseline_gt_cutmix"] == "holds"
    assert by_id["lenet_shifted_acc_baseline_gt_cutmix"] == "not in this experiment"
    assert "mnist_lenet_test_loss_baseline_lt_cutmix" not in by_id  # another report's claim
    assert (tmp_path / "out/claims.csv").exists() and (tmp_path / "out/claims.md").exists()
    assert "(paper 0.652)" in (tmp_path / "out/claims.md").read_text()


def test_render_claims_leaves_the_papers_numbers_out_for_another_dataset(tmp_path) -> None:
    write_long_csv(tmp_path / "metrics.csv", paired_rows([0.70, 0.72, 0.71], [0.6, 0.63, 0.6]))
    exp_cfg = {"report": "das2020", "eval_splits": SPLITS, "compare_with_paper": False}
    verdicts = C.render_claims(
        tmp_path / "metrics.csv", exp_cfg, "last", tmp_path / "claims", DAS_CLAIMS
    )
    by_id = {v.id: v for v in verdicts}
    assert by_id["lenet_test_acc_baseline_gt_cutmix"].verdict == "holds"
    assert all(v.paper_a is None and v.paper_b is None for v in verdicts)
    assert "(paper " not in (tmp_path / "claims.md").read_text()


def test_shipped_das2020_claims_load_and_use_known_names() -> None:
    claims = C.load_claims(DAS_CLAIMS)
    ids = {c.id for c in claims}
    assert len(claims) >= 12 and len(ids) == len(claims)
    for c in claims:
        assert c.metric in METRICS, c.id
        assert c.split in {"test", "shifted", "human"}, c.id
        assert c.report in REPORTS.names(), c.id
        assert c.paper_a is not None and c.paper_b is not None, c.id
    required = {
        "lenet_test_acc_baseline_gt_cutmix", "lenet_test_acc_baseline_gt_mixup",
        "alexnet_test_acc_baseline_gt_cutmix", "alexnet_test_acc_baseline_gt_mixup",
        "lenet_shifted_acc_baseline_gt_cutmix", "teacher_test_acc_cutmix_gt_baseline",
        "teacher_test_separability_cutmix_gt_baseline",
        "teacher_test_discrimination_cutmix_gt_baseline", "teacher_test_ece_mixup_lt_baseline",
    }  # fmt: skip
    assert required <= ids


def test_shipped_claims_quote_the_paper_verbatim() -> None:
    texts = [p.read_text() for p in PAPERS.glob("das2020_*.txt")]
    if not texts:
        if os.environ.get("CI"):  # CI has ../shared beside the clone: a gap must fail there
            pytest.fail(f"paper texts not found under {PAPERS}")
        pytest.skip(f"paper texts not found under {PAPERS}")
    flat = [re.sub(r"\s+", " ", t) for t in texts]
    for c in C.load_claims(DAS_CLAIMS):
        assert any(re.sub(r"\s+", " ", c.quote) in t for t in flat), c.id


def test_shipped_claims_state_the_papers_own_direction_or_flag_it() -> None:
    """A claim whose printed numbers disagree with `expect` must carry a note saying so."""
    for c in C.load_claims(DAS_CLAIMS):
        agrees = (c.paper_a > c.paper_b) == (c.expect == "greater")
        assert agrees or (c.note and "contradicted" in c.note), c.id


def test_shipped_claims_on_the_demo_grid() -> None:
    """Every shipped claim evaluates (no selector is ambiguous) on a full Das grid."""
    rows = []
    for seed in (0, 1):
        for aug in ("none", "standard", "cutout", "mixup", "cutmix"):
            for metric in sorted(METRICS):
                for split in ("test", "cinic10"):
                    rows.append(row(seed, "teacher", aug, 0.5 + seed, metric=metric, split=split))
                    for model in ("lenet", "alexnet"):
                        rows.append(row(seed, model, aug, 0.5, metric=metric, split=split))
    verdicts = C.verdict_rows(rows, C.load_claims(DAS_CLAIMS), SPLITS, "last", report="das2020")
    by_id = {v.id: v for v in verdicts}
    assert by_id["teacher_human_kld_cutmix_lt_baseline"].verdict == "not in this experiment"
    assert by_id["mnist_lenet_test_loss_baseline_lt_cutmix"].verdict == "not in this experiment"
    assert by_id["lenet_test_acc_student_none_gt_student_cutmix"].verdict == (
        "not in this experiment"
    )
    assert by_id["lenet_test_acc_baseline_gt_cutmix"].verdict == "not significant"
    assert by_id["teacher_test_acc_cutmix_gt_baseline"].n == 2
