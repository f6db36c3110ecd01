"""Tables: our values over seeds beside the paper's published ones, written as CSV,
Markdown and LaTeX from one pandas DataFrame.

A :class:`TableSpec` says which models, metrics and evaluation splits a table shows and
what its rows are. ``wide`` tables (the papers' Tables 1-5) have one row per
augmentation and one column per (model, metric); ``long`` tables (the appendix Tables
6-9) have one row per (augmentation, model, split) and one column per metric.

A :class:`Table` (rows of :class:`Cell` s) is seen through :attr:`Table.frame`: one row
per table row (index: the key columns), and per value column the fields
:data:`FRAME_FIELDS` (columns: a (value column, field) MultiIndex). The three files are
written from that frame:

- ``.csv``: every cell as mean, std, n, 95% interval, the paper's value and our difference
  from it (``<column>_<field>``; a missing paper value is empty, a missing mean ``nan``);
- ``.md``: ``mean ± std [95% CI]`` and ``paper p (Δ d)``;
- ``.tex``: a booktabs ``tabular`` fragment (for ``\\input`` inside a ``table``) with
  ``$mean \\pm std$`` cells, the best cell of each column in bold (:func:`better` says
  which end is best), LaTeX's special characters escaped.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from kdaug.io import atomic_path
from kdaug.report.results import Results, Summary

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FIELDS = ("mean", "std", "n", "ci_low", "ci_high", "paper", "diff")
# The frame's fields per value column: the CSV's, and the decimals the paper printed.
FRAME_FIELDS = (*SUMMARY_FIELDS, "decimals")
DECIMALS = 3  # our values in Markdown and LaTeX


@cache
def paper_values(paper: str) -> dict[str, Any]:
    """The published tables of ``paper`` (``kdaug/papers/values/<paper>.yaml``: data the
    paper modules keep beside them, read by name so that this wing imports no paper)."""
    text = resources.files("kdaug").joinpath(f"papers/values/{paper}.yaml").read_text()
    return yaml.safe_load(text)


# (our row's paper key, paper column) -> (published value, decimals printed), or (None, 3).
PaperLookup = Callable[[str, str], tuple[float | None, int]]


def paper_lookup(paper: str | None, names: Sequence[str]) -> PaperLookup:
    """Look values up in the paper's tables ``names`` (first table holding the cell wins;
    no tables, or no paper: never found).

    Printed decimals come from the table's ``decimals`` (one number, or per column) and
    its ``decimals_exceptions`` ([row, column, decimals] triples)."""
    tables = [paper_values(paper)["tables"][n] for n in names] if paper else []

    def lookup(row: str, column: str) -> tuple[float | None, int]:
        for table in tables:
            value = table.get("values", {}).get(row, {}).get(column)
            if value is None:
                continue
            decimals = table.get("decimals", 3)
            if isinstance(decimals, dict):
                decimals = decimals.get(column, 3)
            for r, c, d in table.get("decimals_exceptions", ()):
                if (r, c) == (row, column):
                    decimals = d
            return float(value), int(decimals)
        return None, 3

    return lookup


@dataclass(frozen=True)
class TableSpec:
    name: str
    caption: str
    metrics: tuple[str, ...]
    split_roles: tuple[str, ...] = ("test",)
    models: str = "all"  # all | teacher | students
    rows: str = "teacher_aug"  # teacher_aug | student_aug
    layout: str = "wide"  # wide | long
    paper_table: str | None = None  # key under `tables:` of the paper's values file

    def paper_key(self, model: str, role: str, metric: str) -> str:
        """The paper file's column name (``lenet_accuracy`` or ``lenet_test_accuracy``)."""
        return f"{model}_{metric}" if len(self.split_roles) == 1 else f"{model}_{role}_{metric}"


# -- which cell is best ---------------------------------------------------------------

# The rule: a column's label (or, when it names no metric, the table's metric) is split
# into words; the first word naming a metric whose direction is known decides. Metrics
# without an agreed direction (separability, cohesion, V-score, entropy, Pearson's r)
# mark no cell.
HIGHER_IS_BETTER = frozenset({"accuracy", "acc", "precision", "recall", "f1"})
LOWER_IS_BETTER = frozenset({"loss", "ece", "kld", "kl", "error", "stddev"})


def better(label: str | None) -> str | None:
    """``"max"`` if ``label`` names an accuracy-like metric (accuracy, precision, recall,
    F1), ``"min"`` if a loss-like one (loss, ECE, KL divergence, error, T. stddev), else
    None. ``label`` is a column header or a metric name (``lenet kld_human``)."""
    for word in re.split(r"[^a-z0-9]+", (label or "").lower()):
        if word in HIGHER_IS_BETTER:
            return "max"
        if word in LOWER_IS_BETTER:
            return "min"
    return None


def best_cells(
    frame: pd.DataFrame,
    metric: str | None = None,
    unranked_rows: Sequence[str] = (),
    rank_within: Sequence[str] = (),
) -> list[list[bool]]:
    """``mask[i][j]``: whether row i holds the best mean of value column j, compared as
    printed (:data:`DECIMALS`; ties are all best). A column is ranked when :func:`better`
    knows its direction (from its label, else from ``metric``) and at least two rows
    compete; rows whose first key is in ``unranked_rows`` (a teacher row among students)
    are shown but not ranked. ``rank_within``: key columns whose values split the rows
    into groups ranked separately (a long table's model and split)."""
    import numpy as np

    means = frame.xs("mean", axis=1, level=1)
    firsts = frame.index.get_level_values(0)
    ranked = ~np.asarray(firsts.isin(list(unranked_rows)), dtype=bool)
    groups = (
        list(zip(*(frame.index.get_level_values(k) for k in rank_within), strict=True))
        if rank_within
        else [()] * len(frame)
    )
    mask = np.zeros(means.shape, dtype=bool)
    for j, column in enumerate(means.columns):
        direction = better(column) or better(metric)
        if direction is None:
            continue
        printed = np.round(means.iloc[:, j].to_numpy(dtype=float), DECIMALS)
        for group in dict.fromkeys(groups):
            mine = ranked & np.isfinite(printed) & np.array([g == group for g in groups])
            if mine.sum() < 2:
                continue
            best = printed[mine].max() if direction == "max" else printed[mine].min()
            mask[:, j] |= mine & (printed == best)
    return mask.tolist()


# -- cells ----------------------------------------------------------------------------


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def markdown_cell(f: Mapping[str, Any]) -> str:
    """One cell's Markdown from its fields: ``mean ± std [ci_low, ci_high]`` (the mean
    alone for one seed, a dash for none), then the paper's value and our difference."""
    n = int(f["n"])
    if n == 0:
        text = "—"
    elif n == 1:
        text = f"{f['mean']:.{DECIMALS}f}"
    else:
        text = (
            f"{f['mean']:.{DECIMALS}f} ± {f['std']:.{DECIMALS}f} "
            f"[{f['ci_low']:.{DECIMALS}f}, {f['ci_high']:.{DECIMALS}f}]"
        )
    if not math.isnan(f["paper"]):
        diff = "" if math.isnan(f["diff"]) else f", Δ {f['diff']:+.{DECIMALS}f}"
        text += f"<br>paper {f['paper']:.{int(f['decimals'])}f}{diff}"
    return text


def latex_cell(f: Mapping[str, Any], bold: bool = False) -> str:
    """One cell's LaTeX from its fields: ``$mean \\pm std$`` (the mean alone for one seed,
    ``--`` for none), in ``\\mathbf`` when ``bold``."""
    n = int(f["n"])
    if n == 0:
        return "--"
    text = f"{f['mean']:.{DECIMALS}f}"
    if n > 1 and not math.isnan(f["std"]):
        text += rf" \pm {f['std']:.{DECIMALS}f}"
    return rf"$\mathbf{{{text}}}$" if bold else f"${text}$"


@dataclass(frozen=True)
class Cell:
    summary: Summary
    paper: float | None
    paper_decimals: int = 3  # as printed in the paper

    @property
    def diff(self) -> float:
        if self.paper is None or self.summary.empty:
            return math.nan
        return self.summary.mean - self.paper

    def fields(self) -> list[Any]:
        """The cell's values in :data:`FRAME_FIELDS` order (a missing paper value: NaN)."""
        s = self.summary
        paper = _nan_if_none(self.paper)
        return [s.mean, s.std, s.n, s.ci_low, s.ci_high, paper, self.diff, self.paper_decimals]

    def csv_values(self) -> list[Any]:
        s = self.summary
        paper = "" if self.paper is None else self.paper
        return [s.mean, s.std, s.n, s.ci_low, s.ci_high, paper, self.diff]

    def markdown(self) -> str:
        return markdown_cell(dict(zip(FRAME_FIELDS, self.fields(), strict=True)))

    @classmethod
    def from_fields(cls, f: Mapping[str, Any]) -> Cell:
        summary = Summary.from_record(f)
        paper = None if math.isnan(f["paper"]) else float(f["paper"])
        return cls(summary, paper, int(f["decimals"]))


# -- the three formats, from one frame --------------------------------------------------


def markdown_table(caption: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A caption line and a pipe table of text cells."""
    lines = [caption, "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# Characters LaTeX reads as commands, and the non-ASCII ones our labels use (pdfLaTeX
# without extra packages knows none of them).
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "→": r"$\rightarrow$", "±": r"$\pm$",
    "\u00d7": r"$\times$", "Δ": r"$\Delta$", "—": "---",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it literally."""
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_tabular(
    caption: str,
    key_header: Sequence[str],
    value_header: Sequence[str],
    rows: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> str:
    """A booktabs ``tabular`` fragment: key columns left-aligned, value columns right;
    headers and keys are plain text (escaped here), value cells LaTeX already. The
    caption goes above as comments (the fragment is ``\\input`` into a ``table``)."""
    plain = caption.replace("**", "").replace("`", "")
    lines = [f"% {line}" for line in textwrap.wrap(plain, 96)]
    lines.append(r"\begin{tabular}{" + "l" * len(key_header) + "r" * len(value_header) + "}")
    lines.append(r"\toprule")
    header = [latex_escape(h) for h in (*key_header, *value_header)]
    lines.append(" & ".join(header) + r" \\")
    lines.append(r"\midrule")
    for keys, cells in rows:
        lines.append(" & ".join([*(latex_escape(k) for k in keys), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _cell_fields(frame: pd.DataFrame) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """(keys, the fields of each cell) per row of a table frame."""
    columns = list(dict.fromkeys(c for c, _ in frame.columns))
    out = []
    for keys, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        fields = dict(zip(frame.columns, values, strict=True))
        keys = list(keys) if isinstance(keys, tuple) else [keys]
        out.append(
            ([str(k) for k in keys], [{f: fields[(c, f)] for f in FRAME_FIELDS} for c in columns])
        )
    return out


def _header(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    return [str(n) for n in frame.index.names], list(dict.fromkeys(c for c, _ in frame.columns))


def frame_markdown(frame: pd.DataFrame, caption: str) -> str:
    keys, values = _header(frame)
    rows = [k + [markdown_cell(f) for f in cells] for k, cells in _cell_fields(frame)]
    return markdown_table(caption, keys + values, rows)


def frame_latex(
    frame: pd.DataFrame,
    caption: str = "",
    metric: str | None = None,
    unranked_rows: Sequence[str] = (),
    rank_within: Sequence[str] = (),
) -> str:
    """The table frame as a booktabs fragment, best cell of each column in bold (see
    :func:`best_cells` for the options)."""
    keys, values = _header(frame)
    bold = best_cells(frame, metric, unranked_rows, rank_within)
    rows = [
        (k, [latex_cell(f, b) for f, b in zip(cells, marks, strict=True)])
        for (k, cells), marks in zip(_cell_fields(frame), bold, strict=True)
    ]
    note = " LaTeX cells: mean ± std over seeds"
    if any(any(marks) for marks in bold):
        note += (
            "; bold: the best of its column (highest accuracy, precision, recall, F1; "
            "lowest loss, ECE, KL, error, stddev)"
        )
    note += "."
    return latex_tabular(caption + note, keys, values, rows)


def write_frame_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """``<column>_<field>`` per value column and :data:`SUMMARY_FIELDS` field, spaces in
    names as underscores; a missing paper value empty, any other missing value ``nan``."""
    flat = frame.loc[:, [c for c in frame.columns if c[1] in SUMMARY_FIELDS]].copy()
    for c in flat.columns:
        if c[1] == "paper":
            flat[c] = flat[c].astype(object).where(flat[c].notna(), "")
    flat.columns = [f"{c.replace(' ', '_')}_{f}" for c, f in flat.columns]
    flat.index.names = [str(n).replace(" ", "_") for n in flat.index.names]
    with atomic_path(path) as tmp:
        flat.reset_index().to_csv(tmp, index=False, na_rep="nan")


def table_frame(
    key_header: Sequence[str],
    value_header: Sequence[str],
    rows: Sequence[tuple[list[str], list[Cell]]],
) -> pd.DataFrame:
    """The frame of a table's cells (see the module's docstring)."""
    import pandas as pd

    index = pd.MultiIndex.from_arrays(
        [[keys[i] for keys, _ in rows] for i in range(len(key_header))], names=list(key_header)
    )
    columns = pd.MultiIndex.from_tuples(
        [(c, f) for c in value_header for f in FRAME_FIELDS], names=["column", "field"]
    )
    data = [[v for cell in cells for v in cell.fields()] for _, cells in rows]
    return _typed(pd.DataFrame(data, index=index, columns=columns))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts and decimals as integers, everything else as floats."""
    return frame.astype({c: int if c[1] in ("n", "decimals") else float for c in frame.columns})


@dataclass(frozen=True)
class Table:
    caption: str
    key_header: list[str]
    value_header: list[str]
    rows: list[tuple[list[str], list[Cell]]]
    # What every value column shows when its header names no metric (``accuracy`` for
    # columns named by teacher/student pair): decides the bold cell (see :func:`better`).
    metric: str | None = None
    # First keys of rows shown for reference but never bold (the teacher among students).
    unranked_rows: tuple[str, ...] = ()
    # Key columns whose values split the rows into groups ranked apart (model, split).
    rank_within: tuple[str, ...] = ()

    @classmethod
    def from_frame(cls, caption: str, frame: pd.DataFrame, **options: Any) -> Table:
        """The table of a frame shaped like :attr:`frame`."""
        keys, values = _header(frame)
        rows = [(k, [Cell.from_fields(f) for f in cells]) for k, cells in _cell_fields(frame)]
        return cls(caption, keys, values, rows, **options)

    @cached_property
    def frame(self) -> pd.DataFrame:
        return table_frame(self.key_header, self.value_header, self.rows)

    def to_markdown(self) -> str:
        return frame_markdown(self.frame, self.caption)

    def to_latex(self) -> str:
        return frame_latex(
            self.frame, self.caption, self.metric, self.unranked_rows, self.rank_within
        )

    def write(self, stem: str | os.PathLike[str]) -> None:
        """``stem``.csv, .md and .tex."""
        write_frame_csv(self.frame, f"{stem}.csv")
        with atomic_path(f"{stem}.md") as tmp:
            tmp.write_text(self.to_markdown())
        with atomic_path(f"{stem}.tex") as tmp:
            tmp.write_text(self.to_latex())


def build_table(
    results: Results, spec: TableSpec, selection: str, paper: str | None = None
) -> Table:
    """Our values of ``spec`` for the ``selection`` weights, beside ``paper``'s.

    The cells are laid out in display order (one record per table cell: its keys, its
    column, what it shows and the paper's value), joined with the summaries over seeds
    and pivoted to the table's shape. Split roles the experiment lacks (set to null:
    :func:`kdaug.plan.absent_roles`) are left out, and the caption says so; the columns
    and paper keys of the others stay as with every role."""
    import pandas as pd

    roles = [r for r in spec.split_roles if results.cfg["eval_splits"].get(r) is not None]
    if not roles:
        raise ValueError(f"{spec.name} reads the split roles {list(spec.split_roles)}; "
                         "the experiment has none of them")  # fmt: skip

    lookup = paper_lookup(paper, [spec.paper_table] if spec.paper_table else [])
    row_label = spec.rows.replace("_aug", " augmentation")
    models = results.models(spec.models)
    wide = spec.layout == "wide"
    keys = [row_label] if wide else [row_label, "model", "split"]
    layout = []
    for row in results.row_values(spec.rows):
        for model in models:
            for role in roles:
                split = results.split(role)
                for metric in spec.metrics:
                    role_suffix = f" ({role})" if len(spec.split_roles) > 1 else ""
                    paper_value, decimals = lookup(row, spec.paper_key(model, role, metric))
                    layout.append({
                        row_label: row, "row": row, "model": model, "split": split,
                        "metric": metric, "paper": _nan_if_none(paper_value),
                        "decimals": decimals,
                        "column": f"{model} {metric}{role_suffix}" if wide else metric,
                    })  # fmt: skip
    splits = [results.split(r) for r in roles]
    summaries = results.summaries(selection, spec.rows, models, splits, spec.metrics)
    cells = pd.DataFrame(layout).merge(
        summaries, on=["row", "model", "split", "metric"], how="left"
    )
    cells["n"] = cells["n"].fillna(0)
    cells["diff"] = cells["mean"] - cells["paper"]
    frame = cells.pivot_table(
        index=keys, columns="column", values=list(FRAME_FIELDS),
        aggfunc="first", dropna=False, sort=False,
    ).swaplevel(axis=1)  # fmt: skip
    order = pd.MultiIndex.from_tuples(
        [(c, f) for c in dict.fromkeys(cells["column"]) for f in FRAME_FIELDS]
    )
    firsts = cells[keys].drop_duplicates()
    rows_in_order = pd.MultiIndex.from_frame(firsts) if len(keys) > 1 else pd.Index(firsts[keys[0]])
    frame = _typed(frame.reindex(index=rows_in_order, columns=order))
    split_names = ", ".join(f"`{s}`" for s in splits)
    source = f" Paper values: {paper}, {spec.paper_table}." if paper and spec.paper_table else ""
    lacking = [r for r in spec.split_roles if r not in roles]
    note = (
        f" Left out: the {', '.join(lacking)} split role(s), which this experiment does not "
        "evaluate (eval_splits set to null)."
        if lacking
        else ""
    )
    caption = (
        f"**{spec.name}** ({selection} weights; splits {split_names}). {spec.caption} "
        f"Cells: mean ± std [95% t-interval] over seeds.{source}{note}"
    )
    # A long table's rows are ranked per model and split (its augmentation rows compete).
    return Table.from_frame(caption, frame, rank_within=tuple(keys[1:]))


__all__ = [
    "FRAME_FIELDS",
    "SUMMARY_FIELDS",
    "Cell",
    "PaperLookup",
    "Table",
    "TableSpec",
    "best_cells",
    "better",
    "build_table",
    "latex_escape",
    "latex_tabular",
    "markdown_table",
    "paper_lookup",
    "paper_values",
]
