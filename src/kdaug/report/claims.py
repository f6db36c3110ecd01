"""Paper claims checked against an experiment's collected metrics, with a test over seeds.

A claims file (``kdaug/papers/claims/<paper>.yaml``) is a list of claims, each checked by
one of two tests (key ``test``):

- ``paired`` (the default): one group of results is larger (``expect: greater``) or
  smaller (``expect: less``) than another on one metric and one split role; the groups are
  paired by seed and tested by a two-sided paired t-test (:func:`evaluate_claim`)::

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
      kind: text                             # optional: text | table_only | qualified
      note: "..."                            # optional

- ``correlation``: over the points of one group, one per student augmentation (each the
  mean over seeds, as Wang et al.'s Figure 4 plots them), Pearson's r between ``x`` and
  ``metric`` is positive (``expect: positive``) or negative; with ``than``, r(x, metric)
  is larger (``positive``) or smaller than r(than, metric) over the same points
  (:func:`correlation_test`)::

    - id: tstddev_vs_test_loss
      test: correlation
      claim: ...                             # and source, quote as above
      x: {metric: t_stddev, split: train_stream}
      metric: test_loss
      split: test
      group: {model: "*", teacher_arch: "*", teacher_aug: standard, kd: kd_t4}
      expect: positive
      than: {metric: cov_mean, split: train_stream}   # optional
      exclude: [append_constant]             # optional: augmentations that are no point

A selector names ``model`` and ``teacher_aug``, and optionally ``student_aug``, ``kd``
(students only) and ``teacher_arch``. ``model`` and ``teacher_arch`` may be ``"*"``: the
claim is then checked once per value the experiment has (per teacher/student pair, say),
its id suffixed ``[teacher/student]`` (:func:`expand_claim`); both groups star the same
keys. The split role ``train_stream`` names Wang et al.'s teacher statistics of a cell's
training stream (:data:`kdaug.cells.STREAM_SPLIT`), which have no weight selection.

``kind`` says what the claim rests on: ``text`` (a sentence of the paper states it, the
default), ``table_only`` (read off a table; no sentence states it) or ``qualified`` (stated,
but the paper qualifies it nearby). Only ``text`` claims count as the paper's claims; the
others are listed apart (:func:`verdicts_markdown`).

``paper`` holds the paper's printed numbers for a and b: ``{a: 0.652, b: 0.621}``, shown for
any experiment, or, for a starred claim, per dataset and starred value
``{cifar100: {wrn_40_2/wrn_16_2: [a, b], ...}}``, shown only on that dataset.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import yaml

from kdaug.cells import STREAM_SPLIT
from kdaug.io import atomic_path
from kdaug.report.results import t_half_width

PAIRED = "paired"
CORRELATION = "correlation"
EXPECTATIONS = {PAIRED: ("greater", "less"), CORRELATION: ("positive", "negative")}
TEXT = "text"
KINDS = (TEXT, "table_only", "qualified")
KIND_LABELS = {"table_only": "table-only observation", "qualified": "qualified by the paper"}

COMMON_KEYS = ("id", "claim", "source", "quote", "metric", "split", "expect")
REQUIRED_KEYS = {PAIRED: (*COMMON_KEYS, "a", "b"), CORRELATION: (*COMMON_KEYS, "x", "group")}
OPTIONAL_KEYS = {
    PAIRED: ("test", "kind", "paper", "report", "note"),
    CORRELATION: ("test", "kind", "than", "exclude", "report", "note"),
}
SELECTOR_REQUIRED = ("model", "teacher_aug")
SELECTOR_OPTIONAL = ("student_aug", "kd", "teacher_arch")
# "*" in these selector keys checks a claim once per value found (in this order in its id).
EACH = "*"
EACH_KEYS = ("teacher_arch", "model")

HOLDS = "holds"
REVERSED = "reversed"
NOT_SIGNIFICANT = "not significant"
NOT_IN_EXPERIMENT = "not in this experiment"


def untested(n: int) -> str:
    """The verdict for too few pairs or points: ``"untested (n=1)"`` (or another n)."""
    return f"untested (n={n})"


UNTESTED = re.compile(r"^untested \(n=\d+\)$")


def is_verdict(text: str) -> bool:
    """Whether ``text`` is one of the verdicts :func:`evaluate_claim` gives."""
    return text in (HOLDS, REVERSED, NOT_SIGNIFICANT, NOT_IN_EXPERIMENT) or bool(
        UNTESTED.match(text)
    )


class ClaimError(ValueError):
    """A malformed claim file or a claim that cannot be evaluated unambiguously."""


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Selector:
    """Which results form one side of a claim.

    ``model`` is ``"teacher"``, a student architecture or ``"*"`` (each student
    architecture). ``student_aug`` and ``kd`` apply to students only; left as ``None`` they
    must be unique among the matching rows. ``teacher_arch`` left as ``None`` must likewise
    be unique; ``"*"`` means each teacher architecture.
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
    def starred(self) -> tuple[str, ...]:
        """The keys set to ``"*"``, in :data:`EACH_KEYS` order."""
        return tuple(k for k in EACH_KEYS if getattr(self, k) == EACH)

    @property
    def label(self) -> str:
        """Short text for tables: ``teacher[cutmix]`` or ``lenet ← cutmix teacher``."""
        if self.is_teacher:
            arch = f"{self.teacher_arch} " if self.teacher_arch else ""
            return f"{arch}teacher[{self.teacher_aug}]"
        extra = [f"{k}={v}" for k, v in (("aug", self.student_aug), ("kd", self.kd)) if v]
        suffix = f" ({', '.join(extra)})" if extra else ""
        arch = f"{self.teacher_arch} " if self.teacher_arch else ""
        return f"{self.model} ← {arch}{self.teacher_aug} teacher{suffix}"


@dataclass(frozen=True)
class Axis:
    """One axis of a correlation claim: a metric at a split role."""

    metric: str
    split: str


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a paper.

    Paired: ``a`` vs ``b`` on ``metric`` at split role ``split``. Correlation: over the
    student augmentations of group ``a`` (``b`` is None) but those in ``exclude``,
    r(``x``, ``metric``), or its difference from r(``than``, ``metric``). ``at`` is the
    starred values an expanded claim is bound to (``"resnet56/resnet20"``), None otherwise.
    """

    id: str
    claim: str
    source: str
    quote: str
    metric: str
    split: str
    a: Selector
    b: Selector | None
    expect: str
    paper_a: float | None = None
    paper_b: float | None = None
    report: str | None = None
    note: str | None = None
    test: str = PAIRED
    kind: str = TEXT
    x: Axis | None = None
    than: Axis | None = None
    paper_by_dataset: Mapping[str, Mapping[str, tuple[float, float]]] | None = None
    at: str | None = None
    exclude: tuple[str, ...] = ()

    @property
    def sides(self) -> tuple[Selector, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)


def _require_str(entry: Mapping[str, Any], key: str, cid: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ClaimError(f"claim {cid!r}: key {key!r} must be a non-empty string, got {value!r}")
    return value


def _optional_str(entry: Mapping[str, Any], key: str, cid: str) -> str | None:
    return None if entry.get(key) is None else _require_str(entry, key, cid)


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
        if value == EACH and key not in EACH_KEYS:
            raise ClaimError(f"claim {cid!r}: '*' in {side!r} applies to {EACH_KEYS} only")
        values[key] = value
    sel = Selector(**values)
    if sel.is_teacher and (sel.student_aug or sel.kd):
        bad = "student_aug" if sel.student_aug else "kd"
        raise ClaimError(f"claim {cid!r}: key {bad!r} in {side!r} applies to students only")
    return sel


def _axis(raw: Any, key: str, cid: str) -> Axis:
    if not isinstance(raw, Mapping) or set(raw) != {"metric", "split"}:
        raise ClaimError(f"claim {cid!r}: key {key!r} must be a mapping with keys metric, split")
    return Axis(_require_str(raw, "metric", cid), _require_str(raw, "split", cid))


def _number(value: Any, where: str, cid: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(f"claim {cid!r}: {where} must be a number, got {value!r}")
    return float(value)


PaperNumbers = tuple[float | None, float | None, dict[str, dict[str, tuple[float, float]]] | None]


def _paper_values(raw: Any, cid: str, starred: tuple[str, ...]) -> PaperNumbers:
    """(a, b, None) from ``{a, b}``; (None, None, table) from ``{dataset: {at: [a, b]}}``."""
    if raw is None:
        return None, None, None
    if not isinstance(raw, Mapping):
        raise ClaimError(f"claim {cid!r}: key 'paper' must be a mapping")
    if set(raw) <= {"a", "b"}:
        a, b = (None if raw.get(s) is None else _number(raw[s], f"paper.{s}", cid) for s in "ab")
        return a, b, None
    if not starred:
        raise ClaimError(
            f"claim {cid!r}: key 'paper' must be a mapping with keys a and b (numbers per "
            "dataset and starred value need a selector with '*')"
        )
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for dataset, per in raw.items():
        if not isinstance(per, Mapping):
            raise ClaimError(f"claim {cid!r}: paper.{dataset} must map starred values to [a, b]")
        table[str(dataset)] = {}
        for at, pair in per.items():
            where = f"paper.{dataset}.{at}"
            if not isinstance(at, str) or len(at.split("/")) != len(starred):
                raise ClaimError(f"claim {cid!r}: {where}: name one value per starred key "
                                 f"{starred}, joined by '/'")  # fmt: skip
            if not isinstance(pair, list) or len(pair) != 2:
                raise ClaimError(f"claim {cid!r}: {where} must be [a, b]")
            table[str(dataset)][at] = (_number(pair[0], where, cid), _number(pair[1], where, cid))
    return None, None, table


def _parse_one(entry: Mapping[str, Any], cid: str) -> Claim:
    test = entry.get("test", PAIRED)
    if test not in EXPECTATIONS:
        raise ClaimError(f"claim {cid!r}: key 'test' must be one of {tuple(EXPECTATIONS)}")
    allowed = REQUIRED_KEYS[test] + OPTIONAL_KEYS[test]
    for key in entry:
        if key not in allowed:
            raise ClaimError(
                f"claim {cid!r}: unknown key {key!r} for a {test} claim (allowed: "
                f"{', '.join(allowed)})"
            )
    for key in REQUIRED_KEYS[test]:
        if key not in entry:
            raise ClaimError(f"claim {cid!r}: missing key {key!r}")
    expect = _require_str(entry, "expect", cid)
    if expect not in EXPECTATIONS[test]:
        raise ClaimError(f"claim {cid!r}: key 'expect' must be one of {EXPECTATIONS[test]}")
    kind = entry.get("kind", TEXT)
    if kind not in KINDS:
        raise ClaimError(f"claim {cid!r}: key 'kind' must be one of {KINDS}")
    common = {
        "id": cid, "claim": _require_str(entry, "claim", cid),
        "source": _require_str(entry, "source", cid), "quote": _require_str(entry, "quote", cid),
        "metric": _require_str(entry, "metric", cid), "split": _require_str(entry, "split", cid),
        "expect": expect, "report": _optional_str(entry, "report", cid),
        "note": _optional_str(entry, "note", cid), "test": test, "kind": kind,
    }  # fmt: skip
    if test == CORRELATION:
        group = _selector(entry["group"], "group", cid)
        # The points are the group's student augmentations: it names students, not one aug.
        if group.is_teacher or group.student_aug is not None:
            raise ClaimError(f"claim {cid!r}: 'group' must select students and leave "
                             "student_aug free (its values are the points)")  # fmt: skip
        than = None if entry.get("than") is None else _axis(entry["than"], "than", cid)
        exclude = entry.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(e, str) and e for e in exclude):
            raise ClaimError(f"claim {cid!r}: key 'exclude' must be a list of augmentations")
        x = _axis(entry["x"], "x", cid)
        return Claim(**common, a=group, b=None, x=x, than=than, exclude=tuple(exclude))
    a, b = _selector(entry["a"], "a", cid), _selector(entry["b"], "b", cid)
    if a.starred != b.starred:
        raise ClaimError(f"claim {cid!r}: 'a' and 'b' must star the same keys "
                         f"(a: {a.starred}, b: {b.starred})")  # fmt: skip
    paper_a, paper_b, table = _paper_values(entry.get("paper"), cid, a.starred)
    return Claim(**common, a=a, b=b, paper_a=paper_a, paper_b=paper_b, paper_by_dataset=table)


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
        claims.append(_parse_one(entry, cid))
    return claims


def load_claims(path: str | os.PathLike[str]) -> list[Claim]:
    """Read and validate a YAML claims file (a list of claim mappings)."""
    with open(path) as fh:
        entries = yaml.safe_load(fh)
    return parse_claims(entries, origin=str(path))


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim on one experiment's results (see :func:`evaluate_claim`).

    For a correlation claim, ``a_mean`` is r(x, metric), ``b_mean`` r(than, metric) or 0,
    ``diff_mean`` their difference, ``t`` the test statistic and ``n`` the points."""

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
    test: str = PAIRED
    kind: str = TEXT
    note: str | None = None


def _seed_key(seed: str) -> tuple[int, Any]:
    try:
        return (0, int(seed))
    except ValueError:
        return (1, seed)


def _where(role: str, eval_splits: Mapping[str, str], selection: str) -> tuple[str, str] | None:
    """(split, selection) of the rows of a split role, or None if the experiment lacks it.
    Teacher statistics of the training stream are filed with no weight selection."""
    if role == STREAM_SPLIT:
        return STREAM_SPLIT, ""
    split = eval_splits.get(role)
    return (split, selection) if split else None


def _cell_matches(row: Mapping[str, str], sel: Selector) -> bool:
    """Whether ``row`` is a result of a model ``sel`` selects ("*" matches any value)."""
    if row["teacher_aug"] != sel.teacher_aug:
        return False
    if sel.teacher_arch not in (None, EACH) and row["teacher_arch"] != sel.teacher_arch:
        return False
    if sel.is_teacher:
        return row["role"] == "teacher"
    if row["role"] != "student" or sel.model not in (EACH, row["student_arch"]):
        return False
    if sel.student_aug is not None and row["student_aug"] != sel.student_aug:
        return False
    return sel.kd is None or row["kd"] == sel.kd


def _values(
    rows: Iterable[Mapping[str, str]],
    sel: Selector,
    metric: str,
    where: tuple[str, str],
    cid: str,
    side: str,
) -> dict[str, float]:
    """Per-seed values of one selector's metric at ``where`` (split, selection)."""
    matched = [
        r for r in rows
        if (r["metric"], r["split"], r["selection"]) == (metric, *where) and _cell_matches(r, sel)
    ]  # fmt: skip
    free = [k for k in ("teacher_arch", "student_aug", "kd") if getattr(sel, k) is None]
    if sel.is_teacher:
        free = [k for k in free if k == "teacher_arch"]
    for key in free:
        found = sorted({r[key] for r in matched})
        if len(found) > 1:
            raise ClaimError(
                f"claim {cid!r}: side {side!r} ({sel.label}) matches several {key} values "
                f"{found}; name one in the claim's selector"
            )
    values: dict[str, float] = {}
    for r in matched:
        value = float(r["value"]) if r["value"] not in ("", None) else math.nan
        if not math.isfinite(value):
            continue
        if r["seed"] in values:
            raise ClaimError(
                f"claim {cid!r}: side {side!r} ({sel.label}) has two values for seed "
                f"{r['seed']} on split {where[0]!r}, selection {where[1]!r}"
            )
        values[r["seed"]] = value
    return values


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
    return _values(rows, getattr(claim, side), claim.metric, (split, selection), claim.id, side)


def _row_value(row: Mapping[str, str], key: str) -> str:
    return row["student_arch"] if key == "model" else row[key]


def expand_claim(claim: Claim, rows: Sequence[Mapping[str, str]]) -> list[Claim]:
    """One claim per combination of its starred keys' values that every side has in
    ``rows`` (in the order of the rows), with those values bound and the id suffixed
    ``[value/value]``: a claim about each teacher/student pair of an experiment. A claim
    without ``"*"`` is returned as is; a starred one whose groups are absent, as []."""
    keys = claim.a.starred
    if not keys:
        return [claim]
    common: dict[tuple[str, ...], None] | None = None
    for sel in claim.sides:
        found = dict.fromkeys(
            tuple(_row_value(r, k) for k in keys) for r in rows if _cell_matches(r, sel)
        )
        common = found if common is None else {v: None for v in common if v in found}
    expanded = []
    for values in common or {}:
        bound = dict(zip(keys, values, strict=True))
        at = "/".join(values)
        a = replace(claim.a, **bound)
        b = None if claim.b is None else replace(claim.b, **bound)
        expanded.append(replace(claim, id=f"{claim.id}[{at}]", at=at, a=a, b=b))
    return expanded


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


# Near ±1, Fisher's z is infinite; clip so that perfect correlations stay finite numbers.
_R_CLIP = 1.0 - 1e-12


def _dependent_correlations_z(r1: float, r2: float, r12: float, n: int) -> float:
    """Meng, Rosenthal & Rubin's (1992) z for r(x1, y) = r(x2, y), where r12 = r(x1, x2)."""
    r1c, r2c = (float(np.clip(r, -_R_CLIP, _R_CLIP)) for r in (r1, r2))
    mean_sq = (r1c**2 + r2c**2) / 2
    f = min((1 - r12) / (2 * (1 - mean_sq)), 1.0)
    h = (1 - f * mean_sq) / (1 - mean_sq)
    denominator = 2 * (1 - r12) * h
    if denominator <= 0:  # x1 and x2 are one variable: their correlations with y are equal
        return 0.0
    return (math.atanh(r1c) - math.atanh(r2c)) * math.sqrt((n - 3) / denominator)


def correlation_test(
    x: Sequence[float], y: Sequence[float], than: Sequence[float] | None = None
) -> dict[str, float]:
    """Pearson's r between ``x`` and ``y`` over n points, and its two-sided test.

    Without ``than``: ``r`` and ``p`` (:func:`scipy.stats.pearsonr`: the t-test of r = 0 on
    n - 2 degrees of freedom), ``stat`` that t statistic, ``diff = r``, and the 95% Fisher-z
    interval ``ci_low``/``ci_high`` (n > 3). With ``than``, a second x over the same points:
    ``r_than`` = r(than, y), ``diff = r - r_than`` and the test of r(x, y) = r(than, y) for
    two correlations sharing y (:func:`_dependent_correlations_z`: ``stat`` is z, no
    interval).

    Conventions: fewer than 3 points (4 with ``than``) give NaN everywhere; an axis with
    one value throughout has no r: r is NaN and p = 1 (no evidence of a relation).
    """
    series = [np.asarray(s, dtype=float) for s in (x, y, *([] if than is None else [than]))]
    n = int(series[0].size)
    if any(s.shape != (n,) for s in series):
        raise ValueError("correlation_test needs 1-d sequences of equal length")
    nan = math.nan
    out = {"r": nan, "r_than": nan, "diff": nan, "ci_low": nan, "ci_high": nan}
    out |= {"stat": nan, "p": nan}
    if n < (3 if than is None else 4):
        return out
    if any(float(np.ptp(s)) == 0 for s in series):
        out["p"] = 1.0
        return out
    from scipy import stats

    r, p = (float(v) for v in stats.pearsonr(series[0], series[1]))
    if than is None:
        t = math.copysign(math.inf, r) if abs(r) >= 1 else r * math.sqrt((n - 2) / (1 - r * r))
        out |= {"r": r, "diff": r, "stat": t, "p": p}
        if n > 3:
            z = math.atanh(float(np.clip(r, -_R_CLIP, _R_CLIP)))
            half = float(stats.norm.ppf(0.975)) / math.sqrt(n - 3)
            out |= {"ci_low": math.tanh(z - half), "ci_high": math.tanh(z + half)}
        return out
    r_than = float(stats.pearsonr(series[2], series[1])[0])
    r12 = float(stats.pearsonr(series[0], series[2])[0])
    z = _dependent_correlations_z(r, r_than, r12, n)
    p = float(2 * stats.norm.sf(abs(z)))
    out |= {"r": r, "r_than": r_than, "diff": r - r_than, "stat": z, "p": p}
    return out


def _empty_verdict(
    claim: Claim, split_name: str, selection: str, alpha: float, verdict: str
) -> Verdict:
    nan = math.nan
    a_label, b_label = _labels(claim)
    return Verdict(
        claim.id, claim.claim, claim.metric, claim.split, split_name, selection, claim.expect,
        a_label, b_label, nan, nan, nan, nan, nan, nan, nan, nan, 0, None, verdict,
        alpha, claim.paper_a, claim.paper_b, claim.test, claim.kind, claim.note,
    )  # fmt: skip


def _labels(claim: Claim) -> tuple[str, str]:
    if claim.test == PAIRED:
        assert claim.b is not None
        return claim.a.label, claim.b.label
    assert claim.x is not None
    a = f"r({claim.x.metric}, {claim.metric}) over the student augmentations of {claim.a.label}"
    return a, f"r({claim.than.metric}, {claim.metric})" if claim.than else "0"


def _verdict_of(n: int, needed: int, p: float, alpha: float, sign_agrees: bool | None) -> str:
    if n < needed:
        return untested(n)
    if p < alpha:
        return HOLDS if sign_agrees else REVERSED
    return NOT_SIGNIFICANT


def _sign_agrees(diff: float, expect: str) -> bool | None:
    expected_sign = 1.0 if expect in ("greater", "positive") else -1.0
    return None if not math.isfinite(diff) or diff == 0 else diff * expected_sign > 0


def evaluate_claim(
    rows: Sequence[Mapping[str, str]],
    claim: Claim,
    eval_splits: Mapping[str, str],
    selection: str,
    alpha: float = 0.05,
    report: str | None = None,
) -> Verdict:
    """Test ``claim`` on long-CSV ``rows`` (see :mod:`kdaug.render`) of one experiment.

    Paired claims: the claim's split role is resolved through ``eval_splits``; each side's
    per-seed values are gathered (:func:`group_values`) and paired by seed (seeds present in
    both sides; ``a_mean``/``b_mean`` are over those paired seeds). :func:`paired_test` then
    tests ``d = a - b`` (two-sided paired t-test, :func:`scipy.stats.ttest_rel`).
    Correlation claims: see :func:`evaluate_correlation`.

    Verdicts:

    * ``"holds"``: p < alpha and the mean difference has the expected sign
      (positive for ``expect: greater``, negative for ``expect: less``);
    * ``"reversed"``: p < alpha and the mean difference has the opposite sign;
    * ``"not significant"``: p >= alpha;
    * ``"untested (n=1)"``: fewer than two paired seeds (``"untested (n=0)"`` when the two
      sides share no seed); p, t, d_z and the interval are NaN, but ``diff_mean`` and
      ``sign_agrees`` are still reported where there is one pair;
    * ``"not in this experiment"``: the split role is not in ``eval_splits``, ``report`` is
      given and differs from the claim's ``report``, either side has no rows (the
      experiment lacks that model, augmentation, metric or split), or a selector still has
      a ``"*"`` (:func:`expand_claim` found no value for it). Not an error.

    Zero-variance differences (n >= 2) follow :func:`paired_test`: all ``d`` equal and
    nonzero is significant in the sign of ``d`` (p = 0); all ``d`` zero is not significant
    (p = 1). ``sign_agrees`` is None when the mean difference is zero or undefined.
    """
    if report is not None and claim.report is not None and claim.report != report:
        return _empty_verdict(claim, "", selection, alpha, NOT_IN_EXPERIMENT)
    if claim.test == CORRELATION:
        return evaluate_correlation(rows, claim, eval_splits, selection, alpha)
    where = _where(claim.split, eval_splits, selection)
    if where is None or claim.a.starred:
        split_name = where[0] if where else ""
        return _empty_verdict(claim, split_name, selection, alpha, NOT_IN_EXPERIMENT)
    a_vals = _values(rows, claim.a, claim.metric, where, claim.id, "a")
    b_vals = _values(rows, claim.b, claim.metric, where, claim.id, "b")
    if not a_vals or not b_vals:
        return _empty_verdict(claim, where[0], selection, alpha, NOT_IN_EXPERIMENT)
    seeds = sorted(set(a_vals) & set(b_vals), key=_seed_key)
    a = [a_vals[s] for s in seeds]
    b = [b_vals[s] for s in seeds]
    n = len(seeds)
    res = paired_test(a, b)
    diff = res["diff_mean"]
    sign_agrees = _sign_agrees(diff, claim.expect)
    nan = math.nan
    return Verdict(
        claim.id, claim.claim, claim.metric, claim.split, where[0], selection, claim.expect,
        claim.a.label, claim.b.label,
        float(np.mean(a)) if n else nan, float(np.mean(b)) if n else nan,
        diff, res["ci_low"], res["ci_high"], res["d_z"], res["t"], res["p"], n, sign_agrees,
        _verdict_of(n, 2, res["p"], alpha, sign_agrees), alpha, claim.paper_a, claim.paper_b,
        claim.test, claim.kind, claim.note,
    )  # fmt: skip


def evaluate_correlation(
    rows: Sequence[Mapping[str, str]],
    claim: Claim,
    eval_splits: Mapping[str, str],
    selection: str,
    alpha: float = 0.05,
) -> Verdict:
    """Test a correlation claim: one point per student augmentation of the group (the mean
    over seeds of each axis; a point needs every axis), then :func:`correlation_test`.
    Augmentations in the claim's ``exclude`` are no point (a sanity check such as Wang et
    al.'s constant image is no augmentation the claim is about).

    Verdicts as :func:`evaluate_claim`'s, on the sign of r (or of r - r_than): fewer than 3
    points (4 with ``than``) are ``"untested (n=k)"``; no point, an axis whose split role
    the experiment lacks, or a selector still starred is ``"not in this experiment"``.
    """
    assert claim.x is not None
    axes = [claim.x, Axis(claim.metric, claim.split), *([claim.than] if claim.than else [])]
    wheres = [_where(axis.split, eval_splits, selection) for axis in axes]
    split_name = wheres[1][0] if wheres[1] else ""
    if any(w is None for w in wheres) or claim.a.starred:
        return _empty_verdict(claim, split_name, selection, alpha, NOT_IN_EXPERIMENT)
    augmentations = dict.fromkeys(
        r["student_aug"]
        for r in rows
        if _cell_matches(r, claim.a) and r["student_aug"] not in claim.exclude
    )
    points = []
    for aug in augmentations:
        sel = replace(claim.a, student_aug=aug)
        means = []
        for axis, where in zip(axes, wheres, strict=True):
            values = _values(rows, sel, axis.metric, where, claim.id, "group")
            means.append(float(np.mean(list(values.values()))) if values else math.nan)
        if all(math.isfinite(m) for m in means):
            points.append(means)
    if not points:
        return _empty_verdict(claim, split_name, selection, alpha, NOT_IN_EXPERIMENT)
    columns = list(zip(*points, strict=True))
    res = correlation_test(columns[0], columns[1], columns[2] if claim.than else None)
    n, needed = len(points), 4 if claim.than else 3
    sign_agrees = _sign_agrees(res["diff"], claim.expect)
    a_label, b_label = _labels(claim)
    b_mean = res["r_than"] if claim.than else 0.0
    return Verdict(
        claim.id, claim.claim, claim.metric, claim.split, split_name, selection, claim.expect,
        a_label, b_label, res["r"], b_mean, res["diff"], res["ci_low"], res["ci_high"],
        math.nan, res["stat"], res["p"], n, sign_agrees,
        _verdict_of(n, needed, res["p"], alpha, sign_agrees), alpha, None, None,
        claim.test, claim.kind, claim.note,
    )  # fmt: skip


def _with_paper_numbers(claim: Claim, dataset: str | None) -> Claim:
    """An expanded claim with the paper's numbers for its dataset and starred values."""
    if claim.paper_by_dataset is None:
        return claim
    pair = claim.paper_by_dataset.get(dataset or "", {}).get(claim.at or "")
    return replace(claim, paper_a=pair[0] if pair else None, paper_b=pair[1] if pair else None)


def verdict_rows(
    rows: Iterable[Mapping[str, str]],
    claims: Sequence[Claim],
    eval_splits: Mapping[str, str],
    selection: str,
    alpha: float = 0.05,
    report: str | None = None,
    dataset: str | None = None,
) -> list[Verdict]:
    """:func:`evaluate_claim` for every claim, in order; a starred claim once per value
    (:func:`expand_claim`), with the paper's numbers for ``dataset`` where it has them."""
    rows = list(rows)
    verdicts = []
    for claim in claims:
        for one in expand_claim(claim, rows) or [claim]:
            one = _with_paper_numbers(one, dataset)
            verdicts.append(evaluate_claim(rows, one, eval_splits, selection, alpha, report))
    return verdicts


# --------------------------------------------------------------------------- output


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    spec = "+" if signed else ""
    # Teacher statistics (T. stddev ~ 5e-3) need significant digits, not three decimals.
    return f"{x:{spec}.3g}" if 0 < abs(x) < 0.01 else f"{x:{spec}.3f}"


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


HEADER = ["claim", "metric (split)", "a", "b", "diff [95% CI]", "p", "n", "verdict"]


def _table_lines(verdicts: Sequence[Verdict]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    for v in verdicts:
        op = ">" if v.expect in ("greater", "positive") else "<"
        split = f"{v.split}: {v.split_name}" if v.split_name else v.split
        if math.isfinite(v.ci_low):
            diff = f"{_num(v.diff_mean, True)} [{_num(v.ci_low, True)}, {_num(v.ci_high, True)}]"
        else:
            diff = _num(v.diff_mean, True)
        kind = f"; {KIND_LABELS[v.kind]}" if v.kind in KIND_LABELS else ""
        cells = [
            f"`{v.id}` (expects a {op} b{kind}): {v.claim}",
            f"{v.metric} ({split})",
            f"{v.a_label}: {_num(v.a_mean)}{_paper(v.paper_a)}",
            f"{v.b_label}: {_num(v.b_mean)}{_paper(v.paper_b)}",
            diff,
            _p(v.p),
            str(v.n),
            f"**{v.verdict}**" if v.verdict in (HOLDS, REVERSED) else v.verdict,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _base_id(verdict_id: str) -> str:
    return verdict_id.split("[", 1)[0]


NOT_COUNTED = (
    "**Not counted as the paper's claims**: table-only observations (read off a table; no "
    "sentence of the paper states them) and claims the paper itself qualifies."
)


def verdicts_markdown(verdicts: Sequence[Verdict], caption: str) -> str:
    """Markdown tables: claim, metric (split), a, b, diff [95% CI], p, n, verdict.

    The paper's claims (``kind: text``) come first; table-only and qualified ones follow
    in a table of their own, then each claim's note once. The a and b cells show the mean
    over paired seeds (r for correlation claims) and, where the claim records them, the
    paper's printed numbers; the interval is shown where there is one.
    """
    counted = [v for v in verdicts if v.kind == TEXT]
    others = [v for v in verdicts if v.kind != TEXT]
    lines = [caption, "", *_table_lines(counted)]
    if others:
        lines += ["", NOT_COUNTED, "", *_table_lines(others)]
    notes = dict.fromkeys((_base_id(v.id), v.note) for v in verdicts if v.note)
    if notes:
        lines += ["", "Notes:", "", *(f"- `{cid}`: {_cell(note)}" for cid, note in notes)]
    return "\n".join(lines) + "\n"


DEFAULT_CAPTION = (
    "**Claims check.** Each claim compares group a with group b on one metric, paired by "
    "seed: two-sided paired t-test of d = a - b (alpha = {alpha}); diff is mean(d) with its 95% "
    "t-interval. Correlation claims: Pearson's r over the student augmentations of one group "
    "(each point the mean over seeds), tested against 0 (95% Fisher interval) or against r "
    "of a baseline statistic over the same points (Meng-Rosenthal-Rubin z); n = points. "
    "holds / reversed: significant in the expected / opposite direction; untested: too few "
    "seeds or points (the sign of the difference is still shown). A claim marked [x/y] is "
    "checked per teacher/student pair."
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
        claims = [replace(c, paper_a=None, paper_b=None, paper_by_dataset=None) for c in claims]
    verdicts = verdict_rows(
        read_long_csv(long_csv),
        claims,
        experiment_cfg["eval_splits"],
        selection,
        alpha,
        report=report,
        dataset=experiment_cfg.get("dataset"),
    )
    write_verdicts(verdicts, stem)
    return verdicts
