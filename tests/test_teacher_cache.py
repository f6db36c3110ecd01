"""Cached teacher logits: a student without augmentation reads its teacher's train-split
logits instead of running the teacher, with the same loss and the same training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdaug.train.augment import build_augmentation
from kdaug.train.engine import Recipe, TeacherLogits, fit, step_batch, step_loss
from kdaug.train.losses import HintonKD, RescaledKD
from test_engine import Tiny, run, toy_data

NONE = build_augmentation("none", [])


def teacher_and_cache():
    teacher, _ = run(None, epochs=2)
    teacher.eval()
    data = toy_data()
    with torch.no_grad():  # as extract_outputs: eval mode, plain rows, its own batch size
        logits = torch.cat([teacher(data.normalized(torch.arange(i, min(i + 7, len(data)))))
                            for i in range(0, len(data), 7)])  # fmt: skip
    return teacher, TeacherLogits.for_split(logits.numpy(), data.labels.numpy(), data), data


@pytest.mark.parametrize("loss_fn", [HintonKD(4.0, 0.9), RescaledKD(0.9, 0.1)])
def test_cached_and_online_teacher_give_the_same_loss_on_a_batch(loss_fn):
    teacher, cache, data = teacher_and_cache()
    index = torch.tensor([5, 0, 17, 33, 2, 59])
    torch.manual_seed(0)
    student = Tiny()
    online = step_batch(data, index, NONE, np.random.default_rng(0), teacher)
    cached = step_batch(data, index, NONE, np.random.default_rng(0), cache)
    torch.testing.assert_close(cached.x, online.x, rtol=0, atol=0)
    torch.testing.assert_close(cached.teacher_logits, online.teacher_logits)
    torch.manual_seed(1)  # the same dropout mask in both passes
    loss_online, _ = step_loss(student, online, loss_fn)
    torch.manual_seed(1)
    loss_cached, _ = step_loss(student, cached, loss_fn)
    torch.testing.assert_close(loss_cached, loss_online)
    assert loss_online.item() > 0


def test_cached_teacher_trains_the_student_the_online_teacher_trains():
    teacher, cache, data = teacher_and_cache()
    students = []
    for t in (teacher, cache):
        torch.manual_seed(0)
        student = Tiny()
        fit(student, data, None, recipe=Recipe(epochs=2, batch_size=16, lr=0.05),
            augmentation=NONE, loss_fn=HintonKD(4.0, 0.9), seed=0, teacher=t,
            log=lambda s: None)  # fmt: skip
        students.append(student.state_dict())
    for k, v in students[0].items():
        torch.testing.assert_close(students[1][k], v, msg=k)


def test_cache_refuses_augmented_batches_and_foreign_splits():
    _, cache, data = teacher_and_cache()
    crop = build_augmentation("crop", [{"op": "crop", "padding": 1}])
    with pytest.raises(ValueError, match="augmentation 'crop' changes them"):
        step_batch(data, torch.arange(4), crop, np.random.default_rng(0), cache)
    logits = cache.logits.numpy()
    with pytest.raises(ValueError, match=r"shape \(59, 3\); the training split needs \(60, 3\)"):
        TeacherLogits.for_split(logits[:59], data.labels.numpy()[:59], data)
    shuffled = np.roll(data.labels.numpy(), 1)
    with pytest.raises(ValueError, match="different training split"):
        TeacherLogits.for_split(logits, shuffled, data)


def test_ce_only_students_need_no_teacher():
    logits = torch.randn(4, 3)
    targets = torch.eye(3)[[0, 1, 2, 0]]
    ce = HintonKD(4.0, 0.0)(logits, targets, None)
    torch.testing.assert_close(ce, torch.nn.functional.cross_entropy(logits, targets.argmax(1)))
    with pytest.raises(ValueError, match="needs teacher logits"):
        HintonKD(4.0, 0.5)(logits, targets, None)
