"""What an experiment's config names: its cells (trained models) and how its student lists
read. The lowest layer of the package: planning, training-side metadata, reports and the
papers all speak of cells, so the type lives below them all (no import circles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

MODELS = "results/models/{dataset}/seed{seed}"

# The config keyword for students trained with their teacher's augmentation.
SAME_AS_TEACHER = "same_as_teacher"

STREAM_SPLIT = "train_stream"
"""The ``split`` Wang et al.'s teacher statistics are filed under in an experiment's
metrics CSV."""


@dataclass(frozen=True)
class Cell:
    """One trained model: a teacher, or a student distilled from one."""

    dataset: str
    seed: int
    teacher_arch: str
    teacher_aug: str
    kd: str | None = None
    student_arch: str | None = None
    student_aug: str | None = None

    @property
    def role(self) -> str:
        return "teacher" if self.kd is None else "student"

    @property
    def teacher(self) -> Cell:
        return Cell(self.dataset, self.seed, self.teacher_arch, self.teacher_aug)

    @property
    def model(self) -> str:
        """The ``{model}`` wildcard: the path below ``results/models/{dataset}/seed{seed}``."""
        head = f"{self.teacher_arch}-{self.teacher_aug}"
        if self.kd is None:
            return head
        return f"{head}/{self.kd}/{self.student_arch}-{self.student_aug}"

    @property
    def directory(self) -> str:
        return f"{MODELS.format(dataset=self.dataset, seed=self.seed)}/{self.model}"

    @property
    def model_file(self) -> str:
        return f"{self.directory}/model.pt"

    def eval_file(self, selection: str, split: str, ext: str) -> str:
        return f"{self.directory}/eval/{selection}/{split}.{ext}"

    def eval_outputs(self, selection: str) -> str:
        """The model's outputs on all its evaluation splits (one .npz)."""
        return f"{self.directory}/eval/{selection}/outputs.npz"

    def eval_metrics(self, selection: str) -> str:
        """The metrics of all its evaluation splits (one .json)."""
        return f"{self.directory}/eval/{selection}/metrics.json"

    def identity(self) -> dict[str, Any]:
        return {"role": self.role, **asdict(self)}


def students_of(exp: Mapping[str, Any], teacher_arch: str) -> list[str]:
    """The student archs distilled from ``teacher_arch``: ``students.archs`` is a list
    crossed with every teacher arch, or a mapping teacher arch -> list (Wang et al.'s
    teacher/student pairs)."""
    archs = exp["students"]["archs"]
    if isinstance(archs, Mapping):
        return list(archs.get(teacher_arch, []))
    return list(archs)


def student_augmentations(exp: Mapping[str, Any], teacher_aug: str) -> list[str]:
    """``students.augmentations: same_as_teacher`` pairs each student with its teacher's
    augmentation (Das et al.'s Table 8 ablation) instead of crossing the two lists."""
    augs = exp["students"]["augmentations"]
    return [teacher_aug] if augs == SAME_AS_TEACHER else list(augs)


def student_variants(exp: Mapping[str, Any], teacher_aug: str) -> list[tuple[str, str]]:
    """(KD method, student augmentation) of each student of a teacher: the cross product
    of ``students.kd_methods`` and ``students.augmentations``, or the explicit list
    ``students.variants`` (Wang et al.'s Table 1 rows: KD, KD+CutMix, KD_960, ...)."""
    if "variants" in exp["students"]:
        return [(v["kd_method"], v["augmentation"]) for v in exp["students"]["variants"]]
    return [
        (kd, saug)
        for kd in exp["students"]["kd_methods"]
        for saug in student_augmentations(exp, teacher_aug)
    ]
