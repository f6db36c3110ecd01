"""An experiment's collected metrics, indexed for tables, figures and claims.

The collect step writes one long CSV (one row per cell x selection x split x metric);
:class:`Results` reads it and answers "the values over seeds of metric m of model x in
table row r", whatever the row means (the teacher's augmentation in the main grid, the
student's in the ablations). :func:`summarize` turns values over seeds into mean, sample
standard deviation and a 95% t-interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdaug.cells import SAME_AS_TEACHER


@dataclass(frozen=True)
class Summary:
    """Values over seeds: mean, sample std (ddof 1), count and a 95% t-interval of the mean.

    With one value the std and interval are NaN (one seed says nothing about spread);
    with none, everything is NaN and ``n`` is 0.
    """

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float

    @property
    def empty(self) -> bool:
        return self.n == 0


def summarize(values: Sequence[float]) -> Summary:
    arr = np.asarray(values, dtype=float)
    n = int(arr.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    from scipy import stats  # imported here: metric jobs that only write CSVs start faster

    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, mean - half, mean + half)


ROW_KINDS = ("teacher_aug", "student_aug")


def row_augmentations(exp: Mapping[str, Any], row_kind: str, row: str) -> tuple[str, str]:
    """(teacher augmentation, student augmentation) of table row ``row``."""
    if row_kind not in ROW_KINDS:
        raise ValueError(f"rows must be one of {ROW_KINDS}; got {row_kind!r}")
    teacher_augs = exp["teachers"]["augmentations"]
    student_augs = exp["students"]["augmentations"]
    if row_kind == "teacher_aug":
        if student_augs == SAME_AS_TEACHER:
            return row, row
        if len(student_augs) != 1:
            raise ValueError(
                "rows by teacher augmentation need one student augmentation; "
                f"this experiment has {student_augs}"
            )
        return row, student_augs[0]
    if len(teacher_augs) != 1:
        raise ValueError(
            "rows by student augmentation need one teacher augmentation; "
            f"this experiment has {teacher_augs}"
        )
    return teacher_augs[0], row


def row_values(exp: Mapping[str, Any], row_kind: str) -> list[str]:
    """The rows of a table: the teachers' or the students' augmentations."""
    augs = exp["students"]["augmentations"]
    if row_kind == "teacher_aug" or augs == SAME_AS_TEACHER:
        return list(exp["teachers"]["augmentations"])
    return list(augs)


class Results:
    """Collected metrics of one experiment.

    ``rows`` says what a table row is: ``teacher_aug`` (Das et al.'s main grid and the
    paired ablation) or ``student_aug`` (the ablation with one baseline teacher and
    students trained with each augmentation). Students are looked up by the row and the
    experiment's configuration; a lookup that matches several KD methods is an error, so a
    table never silently averages different cells.
    """

    def __init__(self, rows: Iterable[Mapping[str, str]], experiment_cfg: Mapping[str, Any]):
        self.cfg = experiment_cfg
        self.values: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            model = "teacher" if r["role"] == "teacher" else r["student_arch"]
            key = (r["selection"], r["split"], model, r["metric"], r["teacher_aug"])
            key += (r["student_aug"], r["kd"]) if r["role"] == "student" else ("", "")
            self.values[key].append((int(r["seed"]), float(r["value"])))

    @property
    def students(self) -> list[str]:
        return list(self.cfg["students"]["archs"])

    def models(self, which: str) -> list[str]:
        """``all`` (teacher first), ``teacher`` or ``students``."""
        return {"all": ["teacher", *self.students], "teacher": ["teacher"]}.get(
            which, self.students
        )

    def row_values(self, row_kind: str) -> list[str]:
        return row_values(self.cfg, row_kind)

    def split(self, role: str) -> str:
        return self.cfg["eval_splits"][role]

    def seed_values(
        self, selection: str, split: str, model: str, metric: str, row_kind: str, row: str
    ) -> dict[int, float]:
        """Seed -> value of one table cell (empty if the cell was not evaluated)."""
        teacher_aug, student_aug = row_augmentations(self.cfg, row_kind, row)
        if model == "teacher":
            return dict(self.values.get((selection, split, model, metric, teacher_aug, "", ""), []))
        found = {
            kd: pairs
            for (sel, spl, mod, met, taug, saug, kd), pairs in self.values.items()
            if (sel, spl, mod, met, taug, saug)
            == (selection, split, model, metric, teacher_aug, student_aug)
        }
        if len(found) > 1:
            raise ValueError(
                f"{model} students of the {teacher_aug} teacher with {student_aug} match several "
                f"KD methods {sorted(found)}; a table needs one"
            )
        return dict(next(iter(found.values()), []))

    def summary(
        self, selection: str, split: str, model: str, metric: str, row_kind: str, row: str
    ) -> Summary:
        values = self.seed_values(selection, split, model, metric, row_kind, row)
        return summarize([values[s] for s in sorted(values)])
