"""An experiment's collected metrics as a pandas DataFrame, summarised over seeds.

The collect step writes one long CSV (one row per cell x selection x split x metric);
:func:`long_frame` turns its rows into a DataFrame once, and :class:`Results` answers "the
values over seeds of metric m of model x in table row r", whatever the row means (the
teacher's augmentation in the main grid, the student's in the ablations).
:func:`summary_frame` summarises groups of a frame (``groupby(...).agg``: mean, sample
standard deviation, count) with a 95% t-interval; :func:`summarize` does the same for one
list of values and returns a :class:`Summary`.

pandas and scipy are imported inside the functions that use them: every job that plans
the workflow imports this module (through the papers' registrations), and most never
summarise anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kdaug.cells import SAME_AS_TEACHER
from kdaug.io import LONG_COLUMNS, read_long_csv

if TYPE_CHECKING:
    import os

    import pandas as pd

CI_LEVEL = 0.95
# The columns :func:`summary_frame` adds per group, in the order of :class:`Summary`.
SUMMARY_COLUMNS = ("mean", "std", "n", "ci_low", "ci_high")
# What identifies one cell's values in :class:`Results` (the seed varies within it).
CELL_KEY = ("selection", "split", "model", "metric", "teacher_aug", "student_aug", "kd")


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

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Summary:
        """The summary in one row of :func:`summary_frame`."""
        return cls(
            float(record["mean"]), float(record["std"]), int(record["n"]),
            float(record["ci_low"]), float(record["ci_high"]),
        )  # fmt: skip


def t_half_width(std: Any, n: Any) -> Any:
    """Half the width of the 95% t-interval of a mean, ``t(0.975, n-1) * std / sqrt(n)``;
    NaN where ``n < 2``. Takes numbers or arrays (a frame's columns) alike."""
    from scipy import stats  # here: jobs that only plan or write CSVs start faster

    n = np.asarray(n, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(n > 1, n - 1, np.nan)
        return stats.t.ppf(0.5 + CI_LEVEL / 2, dof) * std / np.sqrt(n)


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std, count and 95% t-interval of ``values`` (one cell's seeds)."""
    arr = np.asarray(values, dtype=float)
    n = int(arr.size)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan)
    std = float(arr.std(ddof=1))
    half = float(t_half_width(std, n))
    return Summary(mean, std, n, mean - half, mean + half)


def summary_frame(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per group of ``by`` (in first-seen order): the group's keys and the
    :data:`SUMMARY_COLUMNS` of its ``value`` column (the same numbers as
    :func:`summarize` on the group's values)."""
    out = (
        frame.groupby(list(by), sort=False, dropna=False)["value"]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    half = t_half_width(out["std"], out["n"])
    return out.assign(ci_low=out["mean"] - half, ci_high=out["mean"] + half)


def long_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The long metrics CSV's rows as a DataFrame: text columns as read (empty where a
    teacher has no student fields), ``seed`` int, ``value`` float, and ``model``: the
    student's architecture, or ``teacher``."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows))
    for column in LONG_COLUMNS:
        if column not in frame:
            frame[column] = ""
    text = [c for c in LONG_COLUMNS if c not in ("seed", "value")]
    frame[text] = frame[text].fillna("").astype(str)
    frame["seed"] = frame["seed"].astype(int)
    frame["value"] = frame["value"].astype(float)
    teacher = frame["role"] == "teacher"
    # A teacher's row names no student, whatever the writer put in those fields.
    frame.loc[teacher, ["kd", "student_arch", "student_aug"]] = ""
    frame["model"] = frame["student_arch"].where(~teacher, "teacher")
    return frame


def read_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The long metrics CSV at ``path`` as a :func:`long_frame`."""
    return long_frame(read_long_csv(path))


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
    """Collected metrics of one experiment (:attr:`frame`, a :func:`long_frame`).

    ``rows`` says what a table row is: ``teacher_aug`` (Das et al.'s main grid and the
    paired ablation) or ``student_aug`` (the ablation with one baseline teacher and
    students trained with each augmentation). Students are looked up by the row and the
    experiment's configuration; a lookup that matches several KD methods is an error, so a
    table never silently averages different cells.
    """

    def __init__(
        self, rows: Iterable[Mapping[str, Any]] | pd.DataFrame, experiment_cfg: Mapping[str, Any]
    ):
        import pandas as pd

        self.cfg = experiment_cfg
        self.frame = rows if isinstance(rows, pd.DataFrame) else long_frame(rows)

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

    def records(
        self,
        selection: str,
        row_kind: str,
        models: Sequence[str],
        splits: Sequence[str],
        metrics: Sequence[str],
        rows: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The frame's values in table rows ``rows`` (default: every row of ``row_kind``),
        with a ``row`` column; a teacher's values appear in every row its augmentation
        serves. Raises if a (row, model, split, metric) matches several KD methods."""
        import pandas as pd

        f = self.frame
        f = f[
            (f["selection"] == selection)
            & f["model"].isin(list(models))
            & f["split"].isin(list(splits))
            & f["metric"].isin(list(metrics))
        ]
        pieces = []
        for row in self.row_values(row_kind) if rows is None else rows:
            teacher_aug, student_aug = row_augmentations(self.cfg, row_kind, row)
            mine = (f["teacher_aug"] == teacher_aug) & (
                (f["model"] == "teacher") | (f["student_aug"] == student_aug)
            )
            pieces.append(f[mine].assign(row=row))
        found = pd.concat(pieces, ignore_index=True) if pieces else f.assign(row="")
        kds = found.groupby(["row", "model", "metric", "split"], sort=False)["kd"].unique()
        for (row, model, _, _), methods in kds.items():
            if len(methods) > 1:
                teacher_aug, student_aug = row_augmentations(self.cfg, row_kind, row)
                raise ValueError(
                    f"{model} students of the {teacher_aug} teacher with {student_aug} match "
                    f"several KD methods {sorted(methods)}; a table needs one"
                )
        return found

    def summaries(
        self,
        selection: str,
        row_kind: str,
        models: Sequence[str],
        splits: Sequence[str],
        metrics: Sequence[str],
        rows: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """:data:`SUMMARY_COLUMNS` per (row, model, split, metric) that has values."""
        found = self.records(selection, row_kind, models, splits, metrics, rows)
        return summary_frame(found, ["row", "model", "split", "metric"])

    def seed_values(
        self, selection: str, split: str, model: str, metric: str, row_kind: str, row: str
    ) -> dict[int, float]:
        """Seed -> value of one table cell (empty if the cell was not evaluated)."""
        found = self.records(selection, row_kind, [model], [split], [metric], [row])
        return dict(zip(found["seed"].tolist(), found["value"].tolist(), strict=True))

    def summary(
        self, selection: str, split: str, model: str, metric: str, row_kind: str, row: str
    ) -> Summary:
        found = self.summaries(selection, row_kind, [model], [split], [metric], [row])
        return Summary.from_record(found.iloc[0]) if len(found) else summarize([])
