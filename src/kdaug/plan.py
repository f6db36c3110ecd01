"""From config to cells and paths: everything the Snakefile needs, testable without it.

Paths name the cell, so a person reading ``results/`` and Snakemake resolving a target see
the same thing::

    results/data/{dataset}/{split}.npz
    results/models/{dataset}/seed{seed}/{tarch}-{taug}/model.pt                       teacher
    results/models/{dataset}/seed{seed}/{tarch}-{taug}/{kd}/{sarch}-{saug}/model.pt   student
    <model dir>/eval/{selection}/{split}.npz      logits + embeddings
    <model dir>/eval/{selection}/{split}.json     metrics
    results/experiments/{experiment}/...          collected metrics, tables, figures

Names in the config (datasets, architectures, augmentations, KD methods) may use letters,
digits and underscores only, so ``-`` and ``/`` can separate them in paths.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdaug import papers  # noqa: F401  (registers every paper's reports)
from kdaug.cells import (
    MODELS,
    SAME_AS_TEACHER,
    Cell,
    student_variants,
    students_of,
)
from kdaug.data.datasets import BUILDERS
from kdaug.report.registry import NOTES_FILE, PAPERS, REPORTS, report_files

NAME = r"[A-Za-z0-9_]+"
WILDCARDS = {
    "dataset": NAME,
    "split": NAME,
    "seed": r"\d+",
    "tarch": NAME,
    "taug": NAME,
    "kd": NAME,
    "sarch": NAME,
    "saug": NAME,
    "selection": NAME,
    "experiment": NAME,
    "table": rf"table{NAME}",
    "figure": rf"figure{NAME}",
    "model": rf"{NAME}-{NAME}(/{NAME}/{NAME}-{NAME})?",
    "archive": r"[^/]+/[^/]+",  # <folder>/<official file name>
}

DATA = "results/data/{dataset}/{split}.npz"
TEACHER_DIR = MODELS + "/{tarch}-{taug}"
STUDENT_DIR = TEACHER_DIR + "/{kd}/{sarch}-{saug}"
EVAL = MODELS + "/{model}/eval/{selection}/{split}"
EXPERIMENT = "results/experiments/{experiment}"
# Full file paths the rules name (composed here so the rules stay plain wiring).
TRAIN_SPLIT = DATA.replace("{split}", "train")
VAL_SPLIT = DATA.replace("{split}", "val")
TEACHER_MODEL = f"{TEACHER_DIR}/model.pt"
STUDENT_MODEL = f"{STUDENT_DIR}/model.pt"
ANY_MODEL = f"{MODELS}/{{model}}/model.pt"
TEACHER_STATS = f"{STUDENT_DIR}/teacher_stats.json"
# One evaluation job per (model, weight selection) covers every split the model is
# evaluated on (:func:`evaluation_splits`): the outputs of all splits in one .npz, their
# metrics in one .json.
EVAL_OUTPUTS = MODELS + "/{model}/eval/{selection}/outputs.npz"
EVAL_METRICS = MODELS + "/{model}/eval/{selection}/metrics.json"
ATTACKS = f"{EVAL}.attacks.json"
METRICS_CSV = f"{EXPERIMENT}/metrics.csv"
TABLE_CSV = f"{EXPERIMENT}/{{selection}}/{{table}}.csv"
TABLE_MD = f"{EXPERIMENT}/{{selection}}/{{table}}.md"
FIGURE = f"{EXPERIMENT}/{{selection}}/{{figure}}.png"
CLAIMS_CSV = f"{EXPERIMENT}/{{selection}}/claims.csv"
CLAIMS_MD = f"{EXPERIMENT}/{{selection}}/claims.md"


class ConfigError(ValueError):
    """The config names something it does not define."""


def _require(section: Mapping[str, Any], name: str, kind: str, where: str) -> Any:
    if name not in section:
        known = ", ".join(sorted(section)) or "none"
        raise ConfigError(f"{where}: unknown {kind} {name!r} (defined: {known})")
    return section[name]


def merge_config(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Snakemake's config layering, in place: nested mappings merge, anything else
    replaces."""
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One YAML (or JSON) config file; a syntax error is a :class:`ConfigError` naming
    ``file:line:column`` (Snakemake's own message names neither)."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_message(path, err)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys at its top level")
    return loaded


def _yaml_message(path: str | os.PathLike[str], err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML ({err})"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}"
    problem = getattr(err, "problem", None) or str(err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} started at line {context_mark.line + 1})"
    return f"{where}: {problem}"


def check_config_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Read each existing config file, so that a YAML syntax error names its file and line.

    The Snakefile runs this on ``config/config.yaml`` before its ``configfile:`` directive.
    Files given with ``--configfile`` are read by Snakemake before the Snakefile runs, so
    no workflow code sees them first: for those, ``snakemake --verbose`` shows the YAML
    parser's file and line, and :func:`load_layered_config` (tools, tests) reports them.
    """
    for path in paths:
        if Path(path).is_file():
            load_config_file(path)


def load_layered_config(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """The config ``--configfile A B ...`` gives, for code that runs outside Snakemake."""
    config: dict[str, Any] = {}
    for path in paths:
        merge_config(config, load_config_file(path))
    return config


def check_augmentation_ops(config: Mapping[str, Any]) -> None:
    """Every augmentation step names a registered op and only that op's parameters.

    Runs before the JSON schema, whose message for a misspelt op ("not valid under any of
    the given schemas", from the oneOf of step lists and appended-copy mappings) names
    neither the key nor the known ops. Tolerates any shape: what is not a step list is left
    to the schema. A dataset's own augmentations (``datasets.<name>.augmentations``) are
    checked the same way.
    """
    from kdaug.train.augment import OPS  # imports torch: only where the config is checked

    sections = [("augmentations", config.get("augmentations"))]
    datasets = config.get("datasets")
    if isinstance(datasets, Mapping):
        sections += [
            (f"datasets.{d}.augmentations", ds.get("augmentations"))
            for d, ds in datasets.items()
            if isinstance(ds, Mapping)
        ]
    for prefix, section in sections:
        _check_ops(OPS, prefix, section if isinstance(section, Mapping) else {})


def _check_ops(ops: Any, prefix: str, section: Mapping[str, Any]) -> None:
    for name, entry in section.items():
        if isinstance(entry, Mapping):
            parts = [(f"{name}.{k}", entry[k]) for k in ("steps", "append") if k in entry]
        else:
            parts = [(name, entry)]
        for where, steps in parts:
            if not isinstance(steps, list):
                continue
            for i, step in enumerate(steps):
                if not isinstance(step, Mapping) or "op" not in step:
                    continue
                key = f"{prefix}.{where}[{i}]"
                op = step["op"]
                if not isinstance(op, str) or op not in ops:
                    raise ConfigError(
                        f"{key}.op: unknown augmentation op {op!r} (known: {', '.join(ops)})"
                    )
                params = inspect.signature(ops.get(op)).parameters
                if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                    continue
                unknown = sorted(set(step) - {"op"} - set(params))
                if unknown:
                    raise ConfigError(
                        f"{key}: op {op!r} has no parameter {', '.join(map(repr, unknown))} "
                        f"(its parameters: {', '.join(params) or 'none'})"
                    )


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-reference checks the JSON schema cannot express, with messages naming the key:
    names the config defines, and names and sizes the code and the data define (models,
    metrics, augmentation ops, channels, holdout sizes, class names), so that a mistake
    fails before any job runs rather than inside one."""
    check_augmentation_ops(config)
    _check_registered(config)
    for name in config["run"]:
        _require(config["experiments"], name, "experiment", "run")
    check_streamed_roots(config, config["run"])
    check_teacher_weights(config, config["run"])
    for name, ds in config["datasets"].items():
        if ds["builder"] not in BUILDERS:
            raise ConfigError(
                f"datasets.{name}.builder: unknown builder {ds['builder']!r} "
                f"(known: {', '.join(BUILDERS.names())})"
            )
        roles = ds.get("archives", {})
        for role in sorted(BUILDERS.get(ds["builder"]).roles):
            key = _require(roles, role, "archive role", f"datasets.{name}.archives")
            _require(config["archives"], key, "archive", f"datasets.{name}.archives.{role}")
        _check_dataset_data(name, ds)
        _check_dataset_augmentations(config, name, ds)
    for name, exp in config["experiments"].items():
        where = f"experiments.{name}"
        ds = _require(config["datasets"], exp["dataset"], "dataset", where)
        builder = BUILDERS.get(ds["builder"])
        for role, split in present_splits(exp).items():
            if split not in builder.splits:
                raise ConfigError(
                    f"{where}.eval_splits.{role}: dataset {exp['dataset']!r} has no split "
                    f"{split!r} (it has {', '.join(builder.splits)})"
                )
            if split == "test_shifted" and "shift" not in ds:
                raise ConfigError(
                    f"{where}.eval_splits.{role}: test_shifted is the test split under "
                    f"datasets.{exp['dataset']}.shift, which is not set "
                    "(shift: {seed, contrast, noise_std})"
                )
        _check_report(exp, where)
        for arch in exp["teachers"]["archs"]:
            _require(config["architectures"], arch, "architecture", f"{where}.teachers")
        _check_student_archs(config, exp, where)
        for group in ("teachers", "students"):
            augs = exp[group]["augmentations"]
            for aug in exp["teachers"]["augmentations"] if augs == SAME_AS_TEACHER else augs:
                _require(config["augmentations"], aug, "augmentation", f"{where}.{group}")
        for kd in exp["students"]["kd_methods"]:
            _require(config["kd_methods"], kd, "KD method", f"{where}.students")
            for arch in config["kd_methods"][kd].get("init_lr_students", ()):
                _require(config["architectures"], arch, "architecture",
                         f"kd_methods.{kd}.init_lr_students")  # fmt: skip
        for i, variant in enumerate(exp["students"].get("variants", [])):
            for key, listed in (("kd_method", "kd_methods"), ("augmentation", "augmentations")):
                if variant[key] not in exp["students"][listed]:
                    raise ConfigError(
                        f"{where}.students.variants[{i}].{key}: {variant[key]!r} is not in "
                        f"students.{listed}"
                    )
        _check_appended(config, exp, where)
        _check_figure_classes(config, exp, where)
    _check_vscore_groups(config)
    _check_holdouts(config)


def _check_registered(config: Mapping[str, Any]) -> None:
    """Model and metric names against the code's registries (a typo otherwise fails in
    the first training or metrics job, after the data are built)."""
    from kdaug.measure.metrics import METRICS
    from kdaug.models import MODELS  # imports torch: only where the config is checked

    for name, arch in config["architectures"].items():
        if arch["model"] not in MODELS:
            raise ConfigError(
                f"architectures.{name}.model: unknown model {arch['model']!r} "
                f"(known: {', '.join(MODELS)})"
            )
    for metric in config["evaluation"]["metrics"]:
        if metric not in METRICS:
            raise ConfigError(
                f"evaluation.metrics: unknown metric {metric!r} (known: {', '.join(METRICS)})"
            )


def _check_dataset_data(name: str, ds: Mapping[str, Any]) -> None:
    """Normalisation per channel and holdout sizes, where the builder knows the data."""
    builder = BUILDERS.get(ds["builder"])
    where = f"datasets.{name}.normalization"
    mean, std = ds["normalization"]["mean"], ds["normalization"]["std"]
    if len(mean) != len(std):
        raise ConfigError(
            f"{where}: mean has {len(mean)} values and std {len(std)}; give one per channel"
        )
    if builder.channels is not None and len(mean) != builder.channels:
        raise ConfigError(
            f"{where}.mean/std: {len(mean)} values, but {ds['builder']!r} images have "
            f"{builder.channels} channel(s); give one value per channel"
        )
    for i, value in enumerate(std):
        # Inputs are divided by it: 0 gives inf/NaN inputs, which training would report
        # as a divergence ("lower the lr") far from the cause.
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"{where}.std[{i}]: {value} (a standard deviation must be above 0: images "
                "are divided by it)"
            )
    for key, pool in builder.holdout_pools(ds).items():
        if key in ds and not 0 <= int(ds[key]) < pool:
            raise ConfigError(
                f"datasets.{name}.{key}: {ds[key]} images to hold out, but the "
                f"{ds['builder']!r} data have {pool} to take them from (give fewer than {pool})"
            )


def _check_dataset_augmentations(
    config: Mapping[str, Any], name: str, ds: Mapping[str, Any]
) -> None:
    """A dataset's own augmentation entry runs a method the config names globally, and
    appends a copy ``x'`` exactly when the global entry does (which students need a
    teacher, and which KD losses an experiment may use, is decided by name)."""
    for aug, entry in (ds.get("augmentations") or {}).items():
        where = f"datasets.{name}.augmentations.{aug}"
        known = config["augmentations"]
        if aug not in known:
            raise ConfigError(
                f"{where}: no augmentation {aug!r} under `augmentations` to run differently "
                f"on {name!r} (a dataset changes how a named method runs, it adds no name; "
                f"defined: {', '.join(sorted(known))})"
            )
        appends = isinstance(entry, Mapping) and "append" in entry
        if appends != is_appended(config, aug):
            kind = "appends" if appends else "does not append"
            raise ConfigError(
                f"{where}: {kind} a copy x', unlike augmentations.{aug}; a dataset's entry "
                "must be the same kind (steps only, or steps + append)"
            )


def _check_holdouts(config: Mapping[str, Any]) -> None:
    """``best_val`` selection needs a validation holdout on every dataset ``run`` trains.

    Without one (``val_size: 0``, the papers' full training set) the validation split is
    empty, no epoch is ever validated, and the "best" weights would silently be the last.
    """
    if "best_val" not in config["evaluation"]["selections"]:
        return
    datasets = dict.fromkeys(config["experiments"][e]["dataset"] for e in config["run"])
    empty = [d for d in datasets if int(config["datasets"][d].get("val_size", 0)) == 0]
    if empty:
        where = ", ".join(f"datasets.{d}.val_size" for d in empty)
        raise ConfigError(
            f"evaluation.selections: best_val needs a validation holdout, but {where} is 0 "
            "(the papers' full training set, no validation split); give val_size > 0 "
            "or select only `last`"
        )


def known_class_names(config: Mapping[str, Any], dataset: str) -> tuple[str, ...] | None:
    """A dataset's class names where known without its archives: the builder's, or the
    config's ``class_names`` (IDX); None where only the archive says."""
    ds = config["datasets"][dataset]
    names = BUILDERS.get(ds["builder"]).class_names or ds.get("class_names")
    return tuple(names) if names else None


def _check_figure_classes(config: Mapping[str, Any], exp: Mapping[str, Any], where: str) -> None:
    stray = [t for t in (exp.get("figures") or {}).get("teachers") or ()
             if t not in exp["teachers"]["archs"]]  # fmt: skip
    if stray:
        raise ConfigError(
            f"{where}.figures.teachers: {stray} are not teacher archs of the experiment "
            f"({', '.join(exp['teachers']['archs'])})"
        )
    names = known_class_names(config, exp["dataset"])
    wanted = (exp.get("figures") or {}).get("tsne_classes") or []
    missing = [c for c in wanted if names is not None and c not in names]
    if missing:
        raise ConfigError(
            f"{where}.figures.tsne_classes: {missing} are not classes of dataset "
            f"{exp['dataset']!r} (its classes: {', '.join(names or ())})"
        )


def _check_vscore_groups(config: Mapping[str, Any]) -> None:
    """Each V-score group names the classes of some dataset.

    The groups are global and the metric skips a group on data without its classes (CIFAR-100's
    groups on digits), so a group is an error only when no dataset of the config has all of
    its classes, and only when every dataset ``run`` evaluates has known class names (one known
    only from its archive might be the group's).
    """
    groups = config["evaluation"].get("vscore_groups") or {}
    run = sorted({config["experiments"][e]["dataset"] for e in config["run"]})
    in_run = {d: known_class_names(config, d) for d in run}
    if not groups or any(names is None for names in in_run.values()):
        return
    known = [n for n in (known_class_names(config, d) for d in config["datasets"]) if n]
    for group, classes in groups.items():
        if any(set(classes) <= set(names) for names in known):
            continue
        lacks = "; ".join(
            f"{d} lacks {sorted(set(classes) - set(names or ()))}" for d, names in in_run.items()
        )
        raise ConfigError(
            f"evaluation.vscore_groups.{group}: no dataset has all of the classes {classes} "
            f"({lacks}); its V-score would be skipped on every split"
        )


NARROW_KEYS = ("seeds", "teachers", "students", "teacher_augmentations", "student_augmentations")
NARROW_TAG = "__narrow_"


def apply_narrowing(config: dict[str, Any]) -> None:
    """Build a slice of every experiment of ``run`` from the ``narrow`` lists, in place:
    seeds, teacher and student archs, teacher and student augmentations (a key left out
    narrows nothing).

    The command line's way to build a slice without editing the config, e.g.
    ``--config 'narrow={seeds: [0], teachers: [resnet18], students: [lenet]}'``; its
    values arrive as strings, so seeds are compared as text.

    A slice is a new experiment, ``<name>__narrow_<hash of the narrow lists>``, added to
    ``experiments`` and put in ``run`` in place of the full one, so its tables render under
    ``results/experiments/<name>__narrow_<hash>/`` and never overwrite the full
    experiment's (whose config stays as it was; an experiment the lists leave whole keeps
    its name). A value that names nothing in any experiment of ``run`` is an error listing
    the names there, and so is a slice left with no seed, teacher or teacher augmentation.
    """
    narrow = config.get("narrow") or {}
    unknown = set(narrow) - set(NARROW_KEYS)
    if unknown:
        raise ConfigError(
            f"narrow: unknown keys {sorted(unknown)} (known: {', '.join(NARROW_KEYS)})"
        )
    keep = {
        k: sorted({str(v) for v in narrow[k]}) for k in NARROW_KEYS if narrow.get(k) is not None
    }
    if not keep:
        return
    _check_narrow_values(config, keep)
    tag = NARROW_TAG + hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:8]
    run = []
    for name in config["run"]:
        full = config["experiments"][name]
        narrowed = _narrowed(full, keep)
        empty = [k for k, v in (("seeds", narrowed["seeds"]),
                                ("teachers", narrowed["teachers"]["archs"]),
                                ("teacher augmentations", narrowed["teachers"]["augmentations"]))
                 if not v]  # fmt: skip
        if empty:
            raise ConfigError(f"narrow: leaves experiment {name!r} without {', '.join(empty)}")
        if narrowed == full:
            run.append(name)
            continue
        config["experiments"][name + tag] = narrowed
        run.append(name + tag)
    config["run"] = run


def _narrow_names(exp: Mapping[str, Any]) -> dict[str, set[str]]:
    """What each ``narrow`` key can name in one experiment."""
    teacher_augs = list(exp["teachers"]["augmentations"])
    student_augs = exp["students"]["augmentations"]
    student_augs = teacher_augs if student_augs == SAME_AS_TEACHER else list(student_augs)
    student_augs += [v["augmentation"] for v in exp["students"].get("variants", [])]
    return {
        "seeds": {str(s) for s in exp["seeds"]},
        "teachers": set(exp["teachers"]["archs"]),
        "students": {s for t in exp["teachers"]["archs"] for s in students_of(exp, t)},
        "teacher_augmentations": set(teacher_augs),
        "student_augmentations": set(student_augs),
    }


def _check_narrow_values(config: Mapping[str, Any], keep: Mapping[str, list[str]]) -> None:
    """A ``narrow`` value that matches nothing is a typo: without this check it silently
    drops every cell it was meant to keep."""
    names = {k: set[str]() for k in NARROW_KEYS}
    for experiment in config["run"]:
        for key, found in _narrow_names(config["experiments"][experiment]).items():
            names[key] |= found
    for key, values in keep.items():
        unmatched = [v for v in values if v not in names[key]]
        if unmatched:
            known = ", ".join(sorted(names[key], key=lambda n: (len(n), n))) or "none"
            raise ConfigError(
                f"narrow.{key}: no experiment of run ({', '.join(config['run'])}) has "
                f"{', '.join(map(repr, unmatched))}; {key} there: {known}"
            )


def _narrowed(exp: Mapping[str, Any], keep: Mapping[str, list[str]]) -> dict[str, Any]:
    """A copy of ``exp`` with only the kept seeds, archs and augmentations."""

    def kept(values: Iterable[Any], key: str) -> list[Any]:
        return [v for v in values if key not in keep or str(v) in keep[key]]

    out = copy.deepcopy(dict(exp))
    out["seeds"] = kept(exp["seeds"], "seeds")
    out["teachers"]["archs"] = kept(exp["teachers"]["archs"], "teachers")
    out["teachers"]["augmentations"] = kept(
        exp["teachers"]["augmentations"], "teacher_augmentations"
    )
    students = out["students"]
    if isinstance(students["archs"], Mapping):
        students["archs"] = {t: kept(s, "students") for t, s in students["archs"].items()}
    else:
        students["archs"] = kept(students["archs"], "students")
    if students["augmentations"] != SAME_AS_TEACHER:
        students["augmentations"] = kept(students["augmentations"], "student_augmentations")
    if "variants" in students:
        students["variants"] = [
            v for v in students["variants"] if kept([v["augmentation"]], "student_augmentations")
        ]
    return out


def _check_student_archs(config: Mapping[str, Any], exp: Mapping[str, Any], where: str) -> None:
    archs = exp["students"]["archs"]
    if isinstance(archs, Mapping):
        for tarch in archs:
            if tarch not in exp["teachers"]["archs"]:
                raise ConfigError(
                    f"{where}.students.archs: {tarch!r} is not one of the teachers' archs "
                    f"{exp['teachers']['archs']}"
                )
    for tarch in exp["teachers"]["archs"]:
        for arch in students_of(exp, tarch):
            _require(config["architectures"], arch, "architecture", f"{where}.students")


def _check_appended(config: Mapping[str, Any], exp: Mapping[str, Any], where: str) -> None:
    """An appended copy x' is trained with the distillation term only, so it needs a
    student and a KD loss (Wang et al. sec. 4.1)."""
    for aug in exp["teachers"]["augmentations"]:
        if is_appended(config, aug):
            raise ConfigError(
                f"{where}.teachers.augmentations: {aug!r} appends a copy trained by KD only; "
                "teachers have no teacher to distil from"
            )
    if exp["students"]["augmentations"] == SAME_AS_TEACHER:
        return
    for taug in exp["teachers"]["augmentations"]:
        for kd, saug in student_variants(exp, taug):
            method = config["kd_methods"][kd]
            logit_kd = method["loss"] == "hinton" or (
                method["loss"] not in LOGIT_LOSSES and float(method["alpha"]) > 0
            )
            if is_appended(config, saug) and not logit_kd:
                raise ConfigError(
                    f"{where}.students: {kd!r} with {saug!r}: the appended copy is trained "
                    "with the KL term alone, which this method lacks (use a hinton loss, or "
                    "a feature method with alpha > 0)"
                )


def present_splits(exp: Mapping[str, Any]) -> dict[str, str]:
    """Split role -> split, for the roles an experiment evaluates (a role set to null is
    absent: see :func:`absent_roles`)."""
    return {role: split for role, split in exp["eval_splits"].items() if split is not None}


def absent_roles(exp: Mapping[str, Any]) -> list[str]:
    """The split roles an experiment sets to null: it has no such split (e.g. a CIFAR-10
    user without CINIC-10 or CIFAR-10H: ``eval_splits: {shifted: null, human: null}``).

    Null, not a missing key, because Snakemake merges config layers: a layer cannot delete
    a role the base config sets, only replace its value. The tables and figures that read
    only absent roles are left out of the report (:meth:`Paper.left_out`), the claims on
    them read "not in this experiment", and the experiment's ``notes.md`` says so."""
    return [role for role, split in exp["eval_splits"].items() if split is None]


def _check_report(exp: Mapping[str, Any], where: str) -> None:
    """Every split role the experiment's report reads is given a split, or set to null
    (absent: what reads only it is left out); ``test`` is always given (the schema)."""
    report = REPORTS.get(exp["report"])
    missing = PAPERS.get(report.paper).split_roles(report) - set(exp["eval_splits"])
    if missing:
        nulls = ", ".join(f"{r}: null" for r in sorted(missing))
        raise ConfigError(
            f"{where}.eval_splits: the {exp['report']} report needs the split roles "
            f"{sorted(missing)} (to run without such a split, set `{nulls}`: the tables "
            "and figures that read it are left out)"
        )


def experiment_cells(config: Mapping[str, Any], experiment: str) -> list[Cell]:
    """Every model of an experiment: teachers first, then their students."""
    exp = config["experiments"][experiment]
    teachers = [
        Cell(exp["dataset"], seed, arch, aug)
        for seed in exp["seeds"]
        for arch in exp["teachers"]["archs"]
        for aug in exp["teachers"]["augmentations"]
    ]
    students = [
        Cell(t.dataset, t.seed, t.teacher_arch, t.teacher_aug, kd, sarch, saug)
        for t in teachers
        for sarch in students_of(exp, t.teacher_arch)
        for kd, saug in student_variants(exp, t.teacher_aug)
    ]
    return teachers + students


@dataclass(frozen=True)
class Evaluation:
    """One metrics file: a cell evaluated with a weight selection; ``splits``, the splits
    an experiment reads of it (its file may hold more, for other experiments)."""

    cell: Cell
    selection: str
    splits: tuple[str, ...]

    @property
    def metrics_file(self) -> str:
        return self.cell.eval_metrics(self.selection)


def experiment_teacher_stats(config: Mapping[str, Any], experiment: str) -> list[str]:
    """Wang et al.'s teacher statistics files (T. stddev, v̄, r̄) of an experiment's
    students, when the experiment asks for them (``teacher_stats: true``)."""
    if not config["experiments"][experiment].get("teacher_stats", False):
        return []
    cells = [c for c in experiment_cells(config, experiment) if c.role == "student"]
    return [f"{c.directory}/teacher_stats.json" for c in cells]


def experiment_attacks(config: Mapping[str, Any], experiment: str) -> list[str]:
    """Choi et al.'s attack results of every model of an experiment on its test split,
    per weight selection, when the experiment asks for them (``attacks: true``)."""
    exp = config["experiments"][experiment]
    if not exp.get("attacks", False):
        return []
    split = exp["eval_splits"]["test"]
    return [
        cell.eval_file(selection, split, "attacks.json")
        for cell in experiment_cells(config, experiment)
        for selection in config["evaluation"]["selections"]
    ]


def teacher_stats_inputs(
    config: Mapping[str, Any],
    dataset: str,
    seed: str,
    tarch: str,
    taug: str,
    kd: str,
    sarch: str,
    saug: str,
) -> dict[str, str]:
    """The teacher_stats rule's inputs: the training split and the teacher, plus the
    trained student when the augmentation picks samples by the student's entropy."""
    fields = dict(dataset=dataset, seed=seed, tarch=tarch, taug=taug)
    inputs = {
        "train": TRAIN_SPLIT.format(dataset=dataset),
        "teacher": TEACHER_MODEL.format(**fields),
    }
    pick = _augmentation(config, saug, dataset).get("pick") or {}
    if pick.get("by") == "student":
        inputs["student"] = STUDENT_MODEL.format(**fields, kd=kd, sarch=sarch, saug=saug)
    return inputs


def experiment_splits(exp: Mapping[str, Any]) -> tuple[str, ...]:
    """The splits an experiment evaluates its models on (a split may serve two roles)."""
    return tuple(dict.fromkeys(present_splits(exp).values()))


def experiment_evaluations(config: Mapping[str, Any], experiment: str) -> Iterator[Evaluation]:
    exp = config["experiments"][experiment]
    splits = experiment_splits(exp)
    for cell in experiment_cells(config, experiment):
        for selection in config["evaluation"]["selections"]:
            yield Evaluation(cell, selection, splits)


def evaluation_splits(config: Mapping[str, Any]) -> dict[tuple[str, int, str], list[str]]:
    """(dataset, seed, model) -> the splits its evaluation job covers: every split that an
    experiment of ``run`` reads of that model, and the train split for a teacher whose
    students read its cached logits (:func:`student_inputs`).

    Over the experiments the config runs, not every one it defines: a split role an
    experiment sets to null (no CINIC-10 here) is then never read for another experiment
    left out of ``run`` that shares its models. A model's evaluation reruns when the
    splits it needs change (they are a param of its job)."""
    splits: dict[tuple[str, int, str], set[str]] = {}
    for name in config["run"]:
        wanted = experiment_splits(config["experiments"][name])
        for cell in experiment_cells(config, name):
            splits.setdefault((cell.dataset, cell.seed, cell.model), set()).update(wanted)
            if cell.role == "student" and "teacher_logits" in student_inputs(
                config, cell.dataset, cell.seed, cell.teacher_arch, cell.teacher_aug,
                cell.kd, cell.student_aug,
            ):  # fmt: skip
                teacher = cell.teacher
                key = (teacher.dataset, teacher.seed, teacher.model)
                splits.setdefault(key, set()).add("train")
    return {key: sorted(names) for key, names in splits.items()}


def model_splits(
    table: Mapping[tuple[str, int, str], Sequence[str]], dataset: str, seed: int | str, model: str
) -> list[str]:
    """The splits of one model's evaluation job, from :func:`evaluation_splits`; a model
    no experiment evaluates is an error naming it."""
    key = (dataset, int(seed), model)
    if key not in table:
        raise ConfigError(
            f"no experiment of `run` evaluates {dataset} seed {seed} {model} (add an "
            "experiment with this model to `run`)"
        )
    return list(table[key])


# Dataset settings that do not change the canonical files (so not rule params of them).
NOT_DATA_SETTINGS = {"training", "normalization", "archives", "augmentations"}


def dataset_params(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, Any]:
    """What a dataset's builder needs for ``split``: the dataset's data settings and, per
    archive role the split reads, the archive's key, URL and checksums (recorded in the
    split's provenance). Only what changes the file is here, so editing a recipe or
    another split's archive does not rebuild this split."""
    ds = config["datasets"][dataset]
    params = {k: v for k, v in ds.items() if k not in NOT_DATA_SETTINGS}
    if BUILDERS.get(ds["builder"]).streams:  # an index of a local tree: where, and whose
        params.update(root=imagefolder_root(config, dataset), dataset=dataset)
    params["archive_files"] = {
        role: {"key": key, **config["archives"][key]}
        for role, key in sorted(archives_for(config, dataset, split).items())
    }
    return params


def imagefolder_root(config: Mapping[str, Any], dataset: str) -> str | None:
    """Where a streamed dataset's tree is: ``datasets.<name>.root``, else
    ``<data.mirror>/<mirror_folder>`` when a mirror is set (None when neither is)."""
    ds = config["datasets"][dataset]
    if ds.get("root"):
        return str(ds["root"])
    mirror = config["data"].get("mirror")
    return f"{mirror}/{ds.get('mirror_folder', dataset)}" if mirror else None


def check_streamed_roots(config: Mapping[str, Any], experiments: Iterable[str]) -> None:
    """The trees of the streamed datasets that ``experiments`` read exist (ImageNet cannot
    be downloaded: a missing tree fails here, naming its config key, not in a job)."""
    from kdaug.data.imagefolder import MissingRootError, check_root

    for name in experiments:
        dataset = config["experiments"][name]["dataset"]
        if BUILDERS.get(config["datasets"][dataset]["builder"]).streams:
            try:
                check_root(imagefolder_root(config, dataset), dataset, ("train", "val"))
            except MissingRootError as e:
                raise ConfigError(f"experiments.{name} (in run): {e}") from None


def check_teacher_weights(config: Mapping[str, Any], experiments: Iterable[str]) -> None:
    """The published weights files of the teachers ``experiments`` load exist and match
    the hash in their names (a missing file fails here, naming its key and its URL)."""
    from kdaug.models.pretrained import WeightsFileError, check_weights_file

    for name in experiments:
        exp = config["experiments"][name]
        for tarch in exp["teachers"]["archs"]:
            for taug in exp["teachers"]["augmentations"]:
                weights = teacher_weights(config, exp["dataset"], tarch, taug)
                if weights is None:
                    continue
                where = f"datasets.{exp['dataset']}.teacher_weights.{tarch}"
                try:
                    check_weights_file(weights, where)
                except WeightsFileError as e:
                    raise ConfigError(f"experiments.{name} (in run): {e}") from None


def archives_for(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """Archive role -> archive key, for the archives that ``split`` is built from."""
    ds = config["datasets"][dataset]
    roles = BUILDERS.get(ds["builder"]).roles_for(split)
    return {role: ds["archives"][role] for role in roles}


def archive_inputs(config: Mapping[str, Any], dataset: str, split: str) -> dict[str, str]:
    """Archive role -> downloaded file path (the prepare_split rule's named inputs)."""
    downloads = config["data"]["downloads"]
    return {
        role: f"{downloads}/{key}" for role, key in archives_for(config, dataset, split).items()
    }


# Architecture settings that are not the network's: they go into the recipe, so a cell's
# ``arch`` entry (and the spec of every cell that does not use them) stays as it was.
RECIPE_ARCH_SETTINGS = ("student_lr",)


def _arch(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    arch = config["architectures"][name]
    return {"name": name, **{k: v for k, v in arch.items() if k not in RECIPE_ARCH_SETTINGS}}


def student_recipe(config: Mapping[str, Any], dataset: str, kd: str, sarch: str) -> dict[str, Any]:
    """A student's recipe: the dataset's student recipe, scaled by the KD method's
    ``epochs_factor``, at the architecture's ``student_lr`` where it has one.

    RepDistiller's code (which Wang et al. and Choi et al. ran) trains MobileNetV2,
    ShuffleV1 and ShuffleV2 students at lr 0.01 and every other student at 0.05; the
    per-architecture lr is how the config says so (``architectures.<name>.student_lr``)."""
    method = config["kd_methods"][kd]
    recipe = scaled_recipe(
        config["datasets"][dataset]["training"]["student"], method.get("epochs_factor", 1)
    )
    lr = config["architectures"][sarch].get("student_lr")
    if lr is not None:
        recipe["lr"] = lr
    return recipe


def student_method(method: Mapping[str, Any], sarch: str) -> dict[str, Any]:
    """KD method entry ``method`` as student ``sarch`` runs it: an ``init_lr`` limited to
    ``init_lr_students`` applies to those architectures only; the others' initialisation
    stage runs at their own learning rate.

    RepDistiller's ``helper/pretrain.py`` trains FT's paraphraser at 0.01 for ResNet and
    WRN students and at the student's lr otherwise (0.05 for VGG-8, 0.01 for MobileNetV2
    and the ShuffleNets); AB's connectors always at the student's lr."""
    entry = {k: v for k, v in method.items() if k != "init_lr_students"}
    listed = method.get("init_lr_students")
    if listed is not None and sarch not in listed:
        entry.pop("init_lr", None)
    return entry


def augmentation_entry(config: Mapping[str, Any], name: str, dataset: str | None = None) -> Any:
    """The config entry of augmentation ``name`` as it runs on ``dataset``: the dataset's
    own (``datasets.<dataset>.augmentations.<name>``) where it has one, else the global.

    A name means one method everywhere (tables, claims and the papers' rows go by it);
    what a dataset changes is how the method runs on its images, as the authors' code
    does by dataset: crop padding 8 and AutoAugment's ImageNet policy on Tiny ImageNet
    (Wang et al.), no crop or flip under CutMix on MNIST (Das et al.). The dataset is in
    every model path, so each path still names one description."""
    own = (config["datasets"].get(dataset, {}) if dataset else {}).get("augmentations") or {}
    return own[name] if name in own else config["augmentations"][name]


def _augmentation(
    config: Mapping[str, Any], name: str, dataset: str | None = None
) -> dict[str, Any]:
    """``{name, steps}``, plus ``append`` and ``pick`` for Wang et al.'s appended copy.

    An augmentation is written in the config either as its list of steps or as a mapping
    ``{steps, append, pick}``; ``dataset`` picks that dataset's own entry, if any."""
    entry = augmentation_entry(config, name, dataset)
    if isinstance(entry, Mapping):
        return {"name": name, **{k: v for k, v in entry.items()}}
    return {"name": name, "steps": list(entry)}


def is_appended(config: Mapping[str, Any], augmentation: str) -> bool:
    """Whether an augmentation appends an extra copy ``x'`` (KD students only; a dataset's
    own entry appends exactly when the global one does, see :func:`check_config`)."""
    return "append" in _augmentation(config, augmentation)


def scaled_recipe(recipe: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """Wang et al.'s prolonged training: "If the number of total epochs is scaled by a
    factor k, the epochs after which learning rate is decayed is also be scaled by k".
    Fractional factors (the epochs sweep of their Figure 2) round to whole epochs."""
    scaled = dict(recipe)
    if factor == 1:
        return scaled
    scaled["epochs"] = max(1, round(recipe["epochs"] * factor))
    scaled["milestones"] = [max(1, round(m * factor)) for m in recipe.get("milestones", [])]
    return scaled


def _describe_steps(steps: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for step in steps:
        params = ", ".join(f"{k} {v}" for k, v in step.items() if k != "op")
        parts.append(f"{step['op']}({params})" if params else step["op"])
    return " + ".join(parts) or "nothing"


def describe_augmentation(entry: Any) -> str:
    """One line saying how an augmentation runs, every parameter included, so that the
    reading a table used (Choi's ``reading``, Wang's ``per`` and ``self_pairs``, the crop
    padding, the AutoAugment policy) is in plain sight: ``crop(padding 4) + flip(p 0.5)``,
    or ``x: ...; x': ...`` for Wang et al.'s appended copy."""
    if not isinstance(entry, Mapping):
        return _describe_steps(entry)
    text = f"x: {_describe_steps(entry['steps'])}; x': {_describe_steps(entry['append'])}"
    pick = entry.get("pick")
    if pick:
        text += (
            f", keep the {pick.get('keep', 0.5):g} of highest {pick['by']} entropy of "
            f"{pick.get('pool', 2)} draws"
        )
    return text


def experiment_protocol(config: Mapping[str, Any], experiment: str) -> dict[str, str]:
    """How an experiment's models were trained where the papers' readings differ: its
    training set (full, or less a validation holdout) and, per augmentation it trains, how
    that augmentation runs on its dataset (:func:`describe_augmentation`)."""
    exp = config["experiments"][experiment]
    dataset = exp["dataset"]
    val_size = int(config["datasets"][dataset].get("val_size", 0))
    names = list(exp["teachers"]["augmentations"])
    if exp["students"]["augmentations"] != SAME_AS_TEACHER:
        names += exp["students"]["augmentations"]
    protocol = {
        "training set": f"all of {dataset}'s training images"
        if val_size == 0
        else f"{dataset}'s training images less a validation holdout of {val_size}"
    }
    students = dict.fromkeys(a for t in exp["teachers"]["archs"] for a in students_of(exp, t))
    own_lr = {a: config["architectures"][a].get("student_lr") for a in students}
    if any(lr is not None for lr in own_lr.values()):
        recipe_lr = config["datasets"][dataset]["training"]["student"]["lr"]
        protocol["student lr"] = ", ".join(
            f"{a} {lr if lr is not None else recipe_lr:g}" for a, lr in own_lr.items()
        )
    for name in dict.fromkeys(names):
        protocol[name] = describe_augmentation(augmentation_entry(config, name, dataset))
    return protocol


def experiment_view(config: Mapping[str, Any], experiment: str) -> dict[str, Any]:
    """An experiment's config for the render rules, plus what its KD methods resolve to
    on its dataset: ``student_epochs`` and ``kd_alpha`` per KD method (Wang et al.'s
    error-vs-epochs figure plots against them)."""
    exp = dict(config["experiments"][experiment])
    recipe = config["datasets"][exp["dataset"]]["training"]["student"]
    methods = {kd: config["kd_methods"][kd] for kd in exp["students"]["kd_methods"]}
    exp["student_epochs"] = {
        kd: scaled_recipe(recipe, m.get("epochs_factor", 1))["epochs"] for kd, m in methods.items()
    }
    exp["kd_alpha"] = {kd: m["alpha"] for kd, m in methods.items()}
    exp["kd_temperature"] = {kd: m.get("temperature") for kd, m in methods.items()}
    exp["vscore_groups"] = dict(config["evaluation"].get("vscore_groups", {}))
    # Render code sees only the roles it can read; the absent ones, for its notes.
    exp["eval_splits"] = present_splits(exp)
    exp["absent_roles"] = absent_roles(config["experiments"][experiment])
    # How its models were trained, for captions that say which reading a table used.
    exp["protocol"] = experiment_protocol(config, experiment)
    # What the training code runs, for figures that show it (Das et al.'s Figure 2) and
    # reports that mark a scheme by its ops (Wang et al.'s constant-image sanity check):
    # the training split, its normalisation, and each augmentation's cell spec entry.
    dataset = exp["dataset"]
    exp["train_split"] = TRAIN_SPLIT.format(dataset=dataset)
    exp["normalization"] = dict(config["datasets"][dataset]["normalization"])
    names = list(exp["teachers"]["augmentations"])
    if exp["students"]["augmentations"] != SAME_AS_TEACHER:
        names += exp["students"]["augmentations"]
    exp["augmentation_specs"] = {
        aug: _augmentation(config, aug, dataset) for aug in dict.fromkeys(names)
    }
    return exp


def teacher_spec(
    config: Mapping[str, Any], dataset: str, seed: int | str, tarch: str, taug: str
) -> dict[str, Any]:
    """The full description of a teacher cell (a rule param: changing it reruns the cell);
    a teacher loaded from published weights names their file (its name carries its hash)."""
    ds = config["datasets"][dataset]
    spec = {
        "role": "teacher",
        "dataset": dataset,
        "seed": int(seed),
        "arch": _arch(config, tarch),
        "augmentation": _augmentation(config, taug, dataset),
        "recipe": dict(ds["training"]["teacher"]),
        "normalization": dict(ds["normalization"]),
    }
    weights = teacher_weights(config, dataset, tarch, taug)
    if weights is not None:
        spec["pretrained"] = Path(weights).name
    return spec


def teacher_weights(config: Mapping[str, Any], dataset: str, tarch: str, taug: str) -> str | None:
    """The published weights file a teacher cell loads instead of training
    (``datasets.<dataset>.teacher_weights``), or None: absolute, or under ``data.mirror``."""
    entry = (config["datasets"][dataset].get("teacher_weights") or {}).get(tarch)
    if not entry or entry["augmentation"] != taug:
        return None
    mirror = config["data"].get("mirror")
    file = entry["file"]
    return file if os.path.isabs(file) or not mirror else f"{mirror}/{file}"


def teacher_inputs(
    config: Mapping[str, Any], dataset: str, seed: int | str, tarch: str, taug: str
) -> dict[str, str]:
    """The train_teacher rule's inputs: the splits, and the weights file of a teacher
    loaded from published weights."""
    inputs = {
        "train": TRAIN_SPLIT.format(dataset=dataset),
        "val": VAL_SPLIT.format(dataset=dataset),
    }
    weights = teacher_weights(config, dataset, tarch, taug)
    if weights is not None:
        inputs["weights"] = weights
    return inputs


def student_spec(
    config: Mapping[str, Any],
    dataset: str,
    seed: int | str,
    tarch: str,
    taug: str,
    kd: str,
    sarch: str,
    saug: str,
) -> dict[str, Any]:
    """The full description of a distilled student cell."""
    ds = config["datasets"][dataset]
    method = config["kd_methods"][kd]
    return {
        "role": "student",
        "dataset": dataset,
        "seed": int(seed),
        "teacher": {"arch": tarch, "augmentation": taug},
        "arch": _arch(config, sarch),
        "augmentation": _augmentation(config, saug, dataset),
        "kd": {"name": kd, **student_method(method, sarch)},
        "recipe": student_recipe(config, dataset, kd, sarch),
        "normalization": dict(ds["normalization"]),
    }


SPEED_SETTINGS = ("precision", "channels_last", "compile")


def speed_settings(config: Mapping[str, Any]) -> dict[str, str]:
    """The ``runtime`` settings that change how training runs on the device."""
    return {k: str(config["runtime"][k]) for k in SPEED_SETTINGS if k in config["runtime"]}


# The losses that read logits only; every other KD method (the CRD benchmark's zoo,
# kdaug.train.methods) reads the teacher's features, so it runs the teacher model.
LOGIT_LOSSES = ("ce", "hinton", "rescaled")


def reads_features(method: Mapping[str, Any]) -> bool:
    """Whether a KD method reads the teacher's intermediate features."""
    return method["loss"] not in LOGIT_LOSSES


def distills(method: Mapping[str, Any]) -> bool:
    """Whether a KD method reads the teacher (a logit KD weight ``alpha`` of 0 is plain CE;
    a feature method reads the teacher whatever its KL weight)."""
    if reads_features(method):
        return True
    return method["loss"] != "ce" and float(method.get("alpha", 1.0)) != 0.0


def student_inputs(
    config: Mapping[str, Any], dataset: str, seed: int | str, tarch: str, taug: str, kd: str,
    saug: str,
) -> dict[str, str]:  # fmt: skip
    """The distill_student rule's inputs: the splits, and what the student reads of its
    teacher: nothing (CE only), the teacher's cached logits on the train split (a student
    without augmentation sees exactly those rows; ``runtime.teacher_logit_cache``), or the
    teacher model (run on every augmented batch, and for every method that reads features)."""
    inputs = {
        "train": TRAIN_SPLIT.format(dataset=dataset),
        "val": VAL_SPLIT.format(dataset=dataset),
    }
    aug = _augmentation(config, saug, dataset)
    appended = bool(aug.get("append"))
    if not distills(config["kd_methods"][kd]) and not appended:
        return inputs
    teacher = Cell(dataset, int(seed), tarch, taug)
    streams = BUILDERS.get(config["datasets"][dataset]["builder"]).streams  # crops per epoch
    plain = not aug.get("steps") and not appended and not streams
    cacheable = plain and not reads_features(config["kd_methods"][kd])
    if cacheable and config["runtime"].get("teacher_logit_cache", True):
        inputs["teacher_logits"] = teacher.eval_outputs("last")
    else:
        inputs["teacher"] = teacher.model_file
    return inputs


def experiment_outputs(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The tables, figures and claims files of one experiment (its report's, see
    :mod:`kdaug.report.registry`)."""
    base = EXPERIMENT.format(experiment=experiment)
    return [f"{base}/{f}" for f in experiment_report_files(config, experiment)]


def experiment_report_files(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The files rendering an experiment produces, relative to its directory."""
    report = REPORTS.get(config["experiments"][experiment]["report"])
    left_out = left_out_files(config, experiment)
    files = report_files(report, config["evaluation"]["selections"], left_out)
    if absent_roles(config["experiments"][experiment]):
        files.append(NOTES_FILE)  # what the absent split roles leave out
    return files


def left_out_files(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The tables and figures of an experiment's report that read only split roles it
    sets to null (:func:`absent_roles`)."""
    exp = config["experiments"][experiment]
    report = REPORTS.get(exp["report"])
    return PAPERS.get(report.paper).left_out(report, present_splits(exp))


def cell_from_wildcards(dataset: str, seed: int | str, model: str) -> Cell:
    """Inverse of :attr:`Cell.model`: ``resnet18-none/hinton/lenet-none`` -> a student."""
    parts = model.split("/")
    tarch, taug = parts[0].split("-")
    if len(parts) == 1:
        return Cell(dataset, int(seed), tarch, taug)
    sarch, saug = parts[2].split("-")
    return Cell(dataset, int(seed), tarch, taug, parts[1], sarch, saug)
