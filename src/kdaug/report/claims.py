"""Paper claims checked against an experiment's collected metrics, with a paired test over seeds.

A claim (one entry of a YAML list, e.g. ``papers/values/das2020_claims.yaml``) says that one
group of results is larger (``expect: greater``) or smaller (``expect: less``) than another
on one metric and one split role::

    - id: lenet_test_acc_baseline_gt_cutmix
      claim: "The LeNet student of the baseline teacher is more accurate than ..."
      source: "Das et al. 2020 (long), Sec. 4.1.2; Table 1"
      quote: "<verbatim sentence from the paper>"
      metric: accuracy
      split: test                            # a split ROLE: a key of eval_splits
      a: {model: lenet, teacher_aug: none}   # model: "teacher" or a student architecture
      b: {model: lenet, teacher_aug: cutmix}
      expect: greater                        # a > b
      paper: {a: 0.652, b: 0.621}            # optional: the paper's printed numbers
      report: das2020                        # optional: the report kind the claim is about
      note: "..."                            # optional

A group's selector names ``model`` and ``teacher_aug``, and optionally ``student_aug``,
``kd`` (students only) and ``teacher_arch``. Each group yields one value per seed; the two
groups are paired by seed and the differences ``d = a - b`` are tested (see
:func:`evaluate_claim` for the test and its conventions).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import yaml

from kdaug.io import atomic_path
from kdaug.report.results import t_half_width

EXPECTATIONS = ("greater", "less")

REQUIRED_KEYS = ("id", "claim", "source", "quote", "metric", "split", "a", "b", "expect")
OPTIONAL_KEYS = ("paper", "report", "note")
SELECTOR_REQUIRED = ("model", "teacher_aug")
SELECTOR_OPTIONAL = ("student_aug", "kd", "teacher_arch")

HOLDS = "holds"
REVERSED = "reversed"
NOT_SIGNIFICANT = "not significant"
NOT_IN_EXPERIMENT = "not in this experiment"


def untested(n: int) -> str:
    """The verdict for fewer than two paired seeds: ``"untested (n=1)"`` (or ``n=0``)."""
    return f"untested (n={n})"


class ClaimError(ValueError):
    """A malformed claim file or a claim that cannot be evaluated unambiguously."""


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Selector:
    """Which results form one side of a claim.

    ``model`` is ``"teacher"`` or a student architecture. ``student_aug`` and ``kd`` apply to
    students only; left as ``None`` they must be unique among the matching rows.
    ``teacher_arch`` left as ``None`` must likewise be unique.
    """

    model: str
    teacher_aug: str
    student_aug: str | None = None
    kd: str | None = None
    teacher_arch: str | None = None

    @property
    def is_teacher(self) -> bool:
        return self.model == "teacher"

    @property
    def label(self) -> str:
        """Short text for tables: ``teacher[cutmix]`` or ``lenet ← cutmix teacher``."""
        if self.is_teacher:
            arch = f"{self.teacher_arch} " if self.teacher_arch else ""
            return f"{arch}teacher[{self.teacher_aug}]"
        extra = [f"{k}={v}" for k, v in (("aug", self.student_aug), ("kd", self.kd)) if v]
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.model} ← {self.teacher_aug} teacher{suffix}"


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a paper: ``a`` vs ``b`` on ``metric`` at split role ``split``."""

    id: str
    claim: str
    source: str
    quote: str
    metric: str
    split: str
    a: Selector
    b: Selector
    expect: str
    paper_a: float | None = None
    paper_b: float | None = None
    report: str | None = None
    note: str | None = None


def _require_str(entry: Mapping[str, Any], key: str, cid: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ClaimError(f"claim {cid!r}: key {key!r} must be a non-empty string, got {value!r}")
    return value


def _selector(raw: Any, side: str, cid: str) -> Selector:
    if not isinstance(raw, Mapping):
        raise ClaimError(f"claim {cid!r}: key {side!r} must be a mapping, got {raw!r}")
    for key in raw:
        if key not in SELECTOR_REQUIRED + SELECTOR_OPTIONAL:
            raise ClaimError(
                f"claim {cid!r}: unknown key {key!r} in {side!r} "
                f"(allowed: {', '.join(SELECTOR_REQUIRED + SELECTOR_OPTIONAL)})"
            )
    values: dict[str, str] = {}
    for key in SELECTOR_REQUIRED + SELECTOR_OPTIONAL:
        if key not in raw:
            if key in SELECTOR_REQUIRED:
                raise ClaimError(f"claim {cid!r}: {side!r} lacks key {key!r}")
            continue
        value = raw[key]
        if not isinstance(value, str) or not value:
            raise ClaimError(
                f"claim {cid!r}: key {key!r} in {side!r} must be a non-empty string, got {value!r}"
            )
        values[key] = value
    sel = Selector(**values)
    if sel.is_teacher and (sel.student_aug or sel.kd):
        bad = "student_aug" if sel.student_aug else "kd"
        raise ClaimError(f"claim {cid!r}: key {bad!r} in {side!r} applies to students only")
    return sel


def _paper_values(raw: Any, cid: str) -> tuple[float | None, float | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, Mapping) or set(raw) - {"a", "b"}:
        raise ClaimError(f"claim {cid!r}: key 'paper' must be a mapping with keys a and b")
    out = []
    for side in ("a", "b"):
        value = raw.get(side)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ClaimError(f"claim {cid!r}: paper.{side} must be a number, got {value!r}")
        out.append(None if value is None else float(value))
    return out[0], out[1]


def parse_claims(entries: Any, origin: str = "claims") -> list[Claim]:
    """Validate a list of claim mappings (as loaded from YAML) into :class:`Claim` objects."""
    if not isinstance(entries, list):
        raise ClaimError(f"{origin}: expected a list of claims, got {type(entries).__name__}")
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ClaimError(f"{origin}: entry {i} is not a mapping")
        cid = entry.get("id")
        if not isinstance(cid, str) or not cid:
            raise ClaimError(f"{origin}: entry {i} has no string key 'id'")
        if cid in seen:
            raise ClaimError(f"claim {cid!r}: duplicate id")
        seen.add(cid)
        for key in entry:
            if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
                raise ClaimError(
                    f"claim {cid!r}: unknown key {key!r} "
                    f"(allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
                )
        for key in REQUIRED_KEYS:
            if key not in entry:
                raise ClaimError(f"claim {cid!r}: missing key {key!r}")
        expect = _require_str(entry, "expect", cid)
        if expect not in EXPECTATIONS:
            raise ClaimError(f"claim {cid!r}: key 'expect' must be one of {EXPECTATIONS}")
        paper_a, paper_b = _paper_values(entry.get("paper"), cid)
        report = entry.get("report")
        if report is not None:
            report = _require_str(entry, "report", cid)
        note = entry.get("note")
        if note is not None:
            note = _require_str(entry, "note", cid)
        claims.append(
            Claim(
                id=cid,
                claim=_require_str(entry, "claim", cid),
                source=_require_str(entry, "source", cid),
                quote=_require_str(entry, "quote", cid),
                metric=_require_str(entry, "metric", cid),
                split=_require_str(entry, "split", cid),
                a=_selector(entry["a"], "a", cid),
                b=_selector(entry["b"], "b", cid),
                expect=expect,
                paper_a=paper_a,
                paper_b=paper_b,
                report=report,
                note=note,
            )
        )
    return claims


def load_claims(path: str | os.PathLike[str]) -> list[Claim]:
    """Read and validate a YAML claims file (a list of claim mappings)."""
    with open(path) as fh:
        entries = yaml.safe_load(fh)
    return parse_claims(entries, origin=str(path))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim on one experiment's results (see :func:`evaluate_claim`)."""

    id: str
    claim: str
    metric: str
    split: str  # the split role of the claim
    split_name: str  # the experiment's split it resolved to ("" if it did not)
    selection: str
    expect: str
    a_label: str
    b_label: str
    a_mean: float
    b_mean: float
    diff_mean: float
    ci_low: float
    ci_high: float
    d_z: float
    t: float
    p: float
    n: int
    sign_agrees: bool | None
    verdict: str
    alpha: float
    paper_a: float | None = None
    paper_b: float | None = None


def _seed_key(seed: str) -> tuple[int, Any]:
    try:
        return (0, int(seed))
    except ValueError:
        return (1, seed)


def _matches(
    row: Mapping[str, str], sel: Selector, metric: str, split: str, selection: str
) -> bool:
    if (row["metric"], row["split"], row["selection"]) != (metric, split, selection):
        return False
    if row["teacher_aug"] != sel.teacher_aug:
        return False
    if sel.teacher_arch is not None and row["teacher_arch"] != sel.teacher_arch:
        return False
    if sel.is_teacher:
        return row["role"] == "teacher"
    if row["role"] != "student" or row["student_arch"] != sel.model:
        return False
    if sel.student_aug is not None and row["student_aug"] != sel.student_aug:
        return False
    return sel.kd is None or row["kd"] == sel.kd


def group_values(
    rows: Iterable[Mapping[str, str]],
    claim: Claim,
    side: str,
    split: str,
    selection: str,
) -> dict[str, float]:
    """Per-seed values of side ``"a"`` or ``"b"`` of ``claim`` on the split named ``split``.

    Raises :class:`ClaimError` (naming the claim) when an unspecified ``student_aug``, ``kd``
    or ``teacher_arch`` is not unique among the matching rows, or when a seed has two values.
    Rows whose value is not a finite number are dropped.
    """
    sel: Selector = getattr(claim, side)
    matched = [r for r in rows if _matches(r, sel, claim.metric, split, selection)]
    free = [k for k in ("teacher_arch", "student_aug", "kd") if getattr(sel, k) is None]
    if sel.is_teacher:
        free = [k for k in free if k == "teacher_arch"]
    for key in free:
        found = sorted({r[key] for r in matched})
        if len(found) > 1:
            raise ClaimError(
                f"claim {claim.id!r}: side {side!r} ({sel.label}) matches several {key} values "
                f"{found}; name one in the claim's selector"
            )
    values: dict[str, float] = {}
    for r in matched:
        value = float(r["value"]) if r["value"] not in ("", None) else math.nan
        if not math.isfinite(value):
            continue
        if r["seed"] in values:
            raise ClaimError(
                f"claim {claim.id!r}: side {side!r} ({sel.label}) has two values for seed "
                f"{r['seed']} on split {split!r}, selection {selection!r}"
            )
        values[r["seed"]] = value
    return values


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Paired two-sided t-test of ``d = a - b`` and its effect sizes.

    Returns ``diff_mean``, ``ci_low``/``ci_high`` (the 95% t-interval of the mean difference,
    ``mean ± t_{0.975, n-1} · sd / sqrt(n)``), ``d_z`` (``mean(d) / sd(d)``, sd with ddof=1),
    ``t`` and ``p`` (:func:`scipy.stats.ttest_rel`).

    Conventions:

    * n < 2: ``diff_mean`` is still reported; ``ci_*``, ``d_z``, ``t`` and ``p`` are NaN.
    * Zero-variance differences with n >= 2 (all ``d`` equal, where the t statistic is
      undefined): if the common value is nonzero the difference is taken as certain,
      ``t = ±inf``, ``d_z = ±inf`` and ``p = 0``; if every ``d`` is zero there is no
      difference, ``t = d_z = NaN`` and ``p = 1``. Either way the interval is the single
      point ``[mean, mean]``. "All equal" allows floating-point rounding (spread at most
      1e-12 times the data's magnitude).
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError("paired_test needs two 1-d sequences of equal length")
    n = int(a_arr.size)
    d = a_arr - b_arr
    nan = math.nan
    out = {"diff_mean": float(d.mean()) if n else nan, "ci_low": nan, "ci_high": nan}
    out |= {"d_z": nan, "t": nan, "p": nan}
    if n < 2:
        return out
    mean = out["diff_mean"]
    scale = max(1.0, float(np.abs(a_arr).max()), float(np.abs(b_arr).max()))
    if float(np.ptp(d)) <= 1e-12 * scale:
        out["ci_low"] = out["ci_high"] = mean
        if abs(mean) <= 1e-12 * scale:
            out["p"] = 1.0
        else:
            out["t"] = out["d_z"] = math.copysign(math.inf, mean)
            out["p"] = 0.0
        return out
    from scipy import stats  # here: every job that plans the workflow imports this module

    sd = float(d.std(ddof=1))
    res = stats.ttest_rel(a_arr, b_arr)
    half = float(t_half_width(sd, n))
    out |= {"ci_low": mean - half, "ci_high": mean + half, "d_z": mean / sd}
    out |= {"t": float(res.statistic), "p": float(res.pvalue)}
    return out


def _empty_verdict(
    claim: Claim, split_name: str, selection: str, alpha: float, verdict: str
) -> Verdict:
    nan = math.nan
    return Verdict(
        claim.id, claim.claim, claim.metric, claim.split, split_name, selection, claim.expect,
        claim.a.label, claim.b.label, nan, nan, nan, nan, nan, nan, nan, nan, 0, None, verdict,
        alpha, claim.paper_a, claim.paper_b,
    )  # fmt: skip


def evaluate_claim(
    rows: Sequence[Mapping[str, str]],
    claim: Claim,
    eval_splits: Mapping[str, str],
    selection: str,
    alpha: float = 0.05,
    report: str | None = None,
) -> Verdict:
    """Test ``claim`` on long-CSV ``rows`` (see :mod:`kdaug.render`) of one experiment.

    The claim's split role is resolved through ``eval_splits``; each side's per-seed values
    are gathered (:func:`group_values`) and paired by seed (seeds present in both sides;
    ``a_mean``/``b_mean`` are over those paired seeds). :func:`paired_test` then tests
    ``d = a - b`` (two-sided paired t-test, :func:`scipy.stats.ttest_rel`).

    Verdicts:

    * ``"holds"``: p < alpha and the mean difference has the expected sign
      (positive for ``expect: greater``, negative for ``expect: less``);
    * ``"reversed"``: p < alpha and the mean difference has the opposite sign;
    * ``"not significant"``: p >= alpha;
    * ``"untested (n=1)"``: fewer than two paired seeds (``"untested (n=0)"`` when the two
      sides share no seed); p, t, d_z and the interval are NaN, but ``diff_mean`` and
      ``sign_agrees`` are still reported where there is one pair;
    * ``"not in this experiment"``: the split role is not in ``eval_splits``, ``report`` is
      given and differs from the claim's ``report``, or either side has no rows (the
      experiment lacks that model, augmentation, metric or split). Not an error.

    Zero-variance differences (n >= 2) follow :func:`paired_test`: all ``d`` equal and
    nonzero is significant in the sign of ``d`` (p = 0); all ``d`` zero is not significant
    (p = 1). ``sign_agrees`` is None when the mean difference is zero or undefined.
    """
    if report is not None and claim.report is not None and claim.report != report:
        return _empty_verdict(claim, "", selection, alpha, NOT_IN_EXPERIMENT)
    split_name = eval_splits.get(claim.split)
    if not split_name:
        return _empty_verdict(claim, "", selection, alpha, NOT_IN_EXPERIMENT)
    a_vals = group_values(rows, claim, "a", split_name, selection)
    b_vals = group_values(rows, claim, "b", split_name, selection)
    if not a_vals or not b_vals:
        return _empty_verdict(claim, split_name, selection, alpha, NOT_IN_EXPERIMENT)
    seeds = sorted(set(a_vals) & set(b_vals), key=_seed_key)
    a = [a_vals[s] for s in seeds]
    b = [b_vals[s] for s in seeds]
    n = len(seeds)
    res = paired_test(a, b)
    diff = res["diff_mean"]
    expected_sign = 1.0 if claim.expect == "greater" else -1.0
    sign_agrees = None if not math.isfinite(diff) or diff == 0 else diff * expected_sign > 0
    if n < 2:
        verdict = untested(n)
    elif res["p"] < alpha:
        verdict = HOLDS if sign_agrees else REVERSED
    else:
        verdict = NOT_SIGNIFICANT
    nan = math.nan
    return Verdict(
        claim.id, claim.claim, claim.metric, claim.split, split_name, selection, claim.expect,
        claim.a.label, claim.b.label,
        float(np.mean(a)) if n else nan, float(np.mean(b)) if n else nan,
        diff, res["ci_low"], res["ci_high"], res["d_z"], res["t"], res["p"], n, sign_agrees,
        verdict, alpha, claim.paper_a, claim.paper_b,
    )  # fmt: skip


def verdict_rows(
    rows: Iterable[Mapping[str, str]],
    claims: Sequence[Claim],
    eval_splits: Mapping[str, str],
    selection: str,
    alpha: float = 0.05,
    report: str | None = None,
) -> list[Verdict]:
    """:func:`evaluate_claim` for every claim, in order."""
    rows = list(rows)
    return [evaluate_claim(rows, c, eval_splits, selection, alpha, report) for c in claims]


# --------------------------------------------------------------------------- output


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    if p == 0:
        return "0"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _paper(x: float | None) -> str:
    return "" if x is None else f" (paper {x:g})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def verdicts_markdown(verdicts: Sequence[Verdict], caption: str) -> str:
    """A Markdown table: claim, metric (split), a, b, diff [95% CI], p, n, verdict.

    The a and b cells show the mean over paired seeds and, where the claim records them, the
    paper's printed numbers; the interval is shown only where there are two or more pairs.
    """
    header = ["claim", "metric (split)", "a", "b", "diff [95% CI]", "p", "n", "verdict"]
    lines = [caption, "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 8) + "|"]
    for v in verdicts:
        op = ">" if v.expect == "greater" else "<"
        split = f"{v.split}: {v.split_name}" if v.split_name else v.split
        if v.n >= 2:
            diff = f"{_num(v.diff_mean, True)} [{_num(v.ci_low, True)}, {_num(v.ci_high, True)}]"
        else:
            diff = _num(v.diff_mean, True)
        cells = [
            f"`{v.id}` (expects a {op} b): {v.claim}",
            f"{v.metric} ({split})",
            f"{v.a_label}: {_num(v.a_mean)}{_paper(v.paper_a)}",
            f"{v.b_label}: {_num(v.b_mean)}{_paper(v.paper_b)}",
            diff,
            _p(v.p),
            str(v.n),
            f"**{v.verdict}**" if v.verdict in (HOLDS, REVERSED) else v.verdict,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


DEFAULT_CAPTION = (
    "**Claims check.** Each claim compares group a with group b on one metric, paired by "
    "seed: two-sided paired t-test of d = a - b (alpha = {alpha}); diff is mean(d) with its 95% "
    "t-interval. holds / reversed: significant in the expected / opposite direction; "
    "untested: fewer than two paired seeds (the sign of the difference is still shown)."
)


def write_verdicts(
    verdicts: Sequence[Verdict], stem: str | os.PathLike[str], caption: str | None = None
) -> None:
    """Write ``stem``.csv (every :class:`Verdict` field) and ``stem``.md, each atomically."""
    if caption is None:
        alpha = verdicts[0].alpha if verdicts else 0.05
        caption = DEFAULT_CAPTION.format(alpha=alpha)
    columns = [f.name for f in fields(Verdict)]
    with atomic_path(f"{stem}.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        for v in verdicts:
            writer.writerow({k: "" if x is None else x for k, x in asdict(v).items()})
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(verdicts_markdown(verdicts, caption))


def render_claims(
    long_csv: str | os.PathLike[str],
    experiment_cfg: Mapping[str, Any],
    selection: str,
    stem: str | os.PathLike[str],
    claims_path: str | os.PathLike[str],
    alpha: float = 0.05,
) -> list[Verdict]:
    """Check every claim of ``claims_path`` on one experiment's long CSV; write ``stem``.*.

    Only the claims about this experiment's report kind (``experiment_cfg["report"]``) are
    listed; a listed claim whose groups are missing is "not in this experiment". The
    paper's printed numbers are left out where ``compare_with_paper`` is false, as in the
    tables: they are about the paper's dataset, not this one (Fashion-MNIST, the demo).
    """
    from kdaug.io import read_long_csv

    report = experiment_cfg.get("report")
    claims = [c for c in load_claims(claims_path) if c.report in (None, report)]
    if not experiment_cfg.get("compare_with_paper", True):
        claims = [replace(c, paper_a=None, paper_b=None) for c in claims]
    verdicts = verdict_rows(
        read_long_csv(long_csv),
        claims,
        experiment_cfg["eval_splits"],
        selection,
        alpha,
        report=experiment_cfg.get("report"),
    )
    write_verdicts(verdicts, stem)
    return verdicts
