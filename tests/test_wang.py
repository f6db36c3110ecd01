"""Wang et al. (2022): T. stddev / v-bar / r-bar, the appended-copy KD scheme, CutMixPick,
prolonged training and teacher/student pairs in the plan."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdaug import plan
from kdaug.data.canonical import Split
from kdaug.measure.teacher_stats import (
    TeacherStreamStats,
    sample_correlation_mean,
    sample_covariance_mean,
    t_stddev,
    teacher_stream,
)
from kdaug.train.augment import (
    AppendedAugmentation,
    Pick,
    augmentation_from_spec,
    build_augmentation,
    entropy,
    pick_highest_entropy,
)
from kdaug.train.engine import DeviceData, StepBatch, appended_rows, step_batch, step_loss
from kdaug.train.losses import HintonKD

# -- T. stddev, v-bar, r-bar on constructed probability streams -------------------------


def test_t_stddev_is_zero_for_identical_group_means():
    u = np.tile([0.2, 0.3, 0.5], (7, 1))
    assert t_stddev(u) == pytest.approx(0.0, abs=1e-15)


def test_t_stddev_by_hand():
    # Two classes, group means alternate (0.6, 0.4) and (0.4, 0.6): each class's values
    # are 0.6, 0.4, 0.6, 0.4 with mean 0.5; sample variance = 4 * 0.01 / 3, so both
    # stddevs are sqrt(0.04 / 3) and so is their mean.
    u = np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]])
    assert t_stddev(u) == pytest.approx(math.sqrt(0.04 / 3))


def test_t_stddev_needs_two_groups():
    with pytest.raises(ValueError, match="at least 2"):
        t_stddev(np.ones((1, 3)) / 3)


def test_v_and_r_by_hand():
    # Rows (1, 0) and (0, 1): each row's variance over the 2 classes is 0.5 (ddof 1), the
    # covariance between them -0.5: Cov = [[.5, -.5], [-.5, .5]], mean 0; Cor mean 0.
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert sample_covariance_mean(p) == pytest.approx(0.0)
    assert sample_correlation_mean(p) == pytest.approx(0.0)
    # Two identical rows (0.7, 0.3): every Cov entry is 0.08, every Cor entry 1.
    q = np.array([[0.7, 0.3], [0.7, 0.3]])
    assert sample_covariance_mean(q) == pytest.approx(0.08)
    assert sample_correlation_mean(q) == pytest.approx(1.0)


def test_v_and_r_match_numpy_rows_as_variables():
    """The paper implements v-bar with numpy.cov on P (rows = samples = variables)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10), size=12)
    assert sample_covariance_mean(p) == pytest.approx(np.cov(p).mean())
    assert sample_correlation_mean(p) == pytest.approx(np.corrcoef(p).mean())


def test_correlation_skips_rows_without_spread():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.8, 0.2]])
    assert sample_correlation_mean(p) == pytest.approx(1.0)  # the two spread rows agree


def test_stream_groups_batches_and_drops_the_incomplete_group():
    stats = TeacherStreamStats(group_batches=2)
    batches = [np.full((3, 2), [a, 1 - a]) for a in (0.1, 0.3, 0.5, 0.7, 0.9)]
    stats.extend(batches)
    # Groups: (0.1, 0.3) -> mean 0.2, (0.5, 0.7) -> 0.6; the 5th batch waits, dropped.
    np.testing.assert_allclose(np.stack(stats.group_means), [[0.2, 0.8], [0.6, 0.4]])
    summary = stats.summary()
    assert summary["groups"] == 2 and summary["batches"] == 5
    assert summary["samples_per_group"] == 6
    # Class stddevs over the two group means: |0.6 - 0.2| / sqrt(2) each.
    assert summary["t_stddev"] == pytest.approx(0.4 / math.sqrt(2))
    # Each batch has identical rows: Cov entries = that row's class variance.
    expected_v = np.mean([np.var([a, 1 - a], ddof=1) for a in (0.1, 0.3, 0.5, 0.7, 0.9)])
    assert summary["cov_mean"] == pytest.approx(expected_v)


# -- CutMixPick ------------------------------------------------------------------------


def test_pick_keeps_the_stated_fraction_of_the_pool():
    assert Pick("teacher", pool=2, keep=0.5).count(128) == 64
    assert Pick("teacher", pool=1, keep=0.25).count(10) == 2  # round(2.5) -> 2 (banker's)
    assert Pick("student", pool=3, keep=0.01).count(5) == 1  # never empty
    with pytest.raises(ValueError):
        Pick("oracle")
    with pytest.raises(ValueError):
        Pick("teacher", keep=0.0)


def test_pick_highest_entropy_selects_the_flattest_rows():
    logits = torch.tensor(
        [[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [20.0, 0, 0]]
    )
    h = entropy(logits)
    assert h[1] == pytest.approx(math.log(3))  # uniform row: maximal entropy
    keep = pick_highest_entropy(logits, 2)
    assert len(keep) == 2
    assert set(keep.tolist()) == {1, 3}  # the two highest entropies
    assert h[keep].min() >= h[torch.tensor([0, 2, 4])].max()


class Linear(nn.Module):
    """A fixed linear 'network' on flattened images (eval-safe, no BatchNorm)."""

    def __init__(self, in_features: int, classes: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(classes, in_features, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_appended_rows_by_teacher_and_by_student_entropy():
    candidates = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    teacher, student = Linear(16, 5, 1), Linear(16, 5, 2)
    pick = Pick("teacher", pool=2, keep=0.5)
    rows, logits = appended_rows(candidates, pick, teacher, None)
    order = torch.argsort(entropy(teacher(candidates)))
    assert torch.equal(rows, candidates[order[4:]])
    torch.testing.assert_close(logits, teacher(candidates[order[4:]]))
    rows, logits = appended_rows(candidates, Pick("student"), teacher, student)
    order = torch.argsort(entropy(student(candidates)))
    assert torch.equal(rows, candidates[order[4:]])
    torch.testing.assert_close(logits, teacher(rows))  # KD targets still the teacher's


# -- the appended copy -----------------------------------------------------------------


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5) / 0.25


def test_identity_appends_a_plain_copy_of_the_standard_batch():
    aug = augmentation_from_spec(
        {"name": "append_identity", "steps": [{"op": "crop", "padding": 2}], "append": []}
    )
    assert isinstance(aug, AppendedAugmentation) and aug.draws == 1
    x = torch.rand(6, 1, 8, 8)
    y = F.one_hot(torch.arange(6) % 3, 3).float()
    xb, yb, extra = aug.pair(x, y, np.random.default_rng(0), _normalize)
    assert torch.equal(extra, xb)
    base = build_augmentation("b", [{"op": "crop", "padding": 2}])
    ref, _ = base(x, y, np.random.default_rng(0), _normalize)
    assert torch.equal(xb, ref) and torch.equal(yb, y)


def test_appended_pixel_ops_act_before_normalisation():
    """Flip of x' acts on the base's pixels; with p=1 it is the mirror of x."""
    aug = augmentation_from_spec({"name": "a", "steps": [], "append": [{"op": "flip", "p": 1.0}]})
    x = torch.rand(4, 1, 5, 5)
    xb, _, extra = aug.pair(x, torch.eye(4), np.random.default_rng(0), _normalize)
    assert torch.equal(extra, xb.flip(3))


def test_pick_pool_draws_the_append_several_times():
    aug = augmentation_from_spec(
        {
            "name": "p",
            "steps": [],
            "append": [{"op": "cutmix", "alpha": 1.0}],
            "pick": {"by": "teacher", "pool": 3, "keep": 0.5},
        }
    )
    x = torch.rand(4, 1, 8, 8)
    _, _, candidates = aug.pair(x, torch.eye(4), np.random.default_rng(1), _normalize)
    assert candidates.shape == (12, 1, 8, 8)
    assert not torch.equal(candidates[:4], candidates[4:8])  # independent draws


def test_appended_pixel_ops_need_a_base_without_normalized_ops():
    with pytest.raises(ValueError, match="appended pixel ops"):
        augmentation_from_spec(
            {"name": "bad", "steps": [{"op": "cutout", "size": 2}], "append": [{"op": "flip"}]}
        )


def test_append_scheme_loss_equals_hand_computation():
    """x gets (1-a) CE + a T^2 KL, x' gets a T^2 KL only (Wang et al. sec. 4.1, eq. 1)."""
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    t = torch.tensor([[1.5, 0.2, 0.1], [-0.5, 2.0, 0.0]])
    s2 = torch.tensor([[0.3, 0.3, 1.0]])
    t2 = torch.tensor([[1.0, -1.0, 2.0]])
    y = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    temperature, alpha = 4.0, 0.9

    def softmax(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def kl(teacher, student):
        p, q = softmax(teacher.numpy() / temperature), softmax(student.numpy() / temperature)
        return float(np.mean((p * np.log(p / q)).sum(axis=1)))

    ce = float(np.mean(-(y.numpy() * np.log(softmax(s.numpy()))).sum(axis=1)))
    expected = (1 - alpha) * ce + alpha * temperature**2 * (kl(t, s) + kl(t2, s2))

    # A model that returns its input makes the logits the inputs above.
    batch = StepBatch(s, y, t, s2, t2)
    loss, logits = step_loss(nn.Identity(), batch, HintonKD(temperature, alpha))
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # float32 arithmetic
    assert torch.equal(logits, s)


def _digits_like(n: int = 40, classes: int = 4) -> DeviceData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.int64)
    split = Split(images, labels, [str(c) for c in range(classes)])
    return DeviceData.from_split(split, [0.5], [0.25], torch.device("cpu"))


def test_step_batch_appends_picked_rows_with_teacher_targets():
    data = _digits_like()
    aug = augmentation_from_spec(
        {
            "name": "p",
            "steps": [{"op": "crop", "padding": 1}],
            "append": [{"op": "cutmix", "alpha": 1.0}],
            "pick": {"by": "teacher", "pool": 2, "keep": 0.5},
        }
    )
    teacher = Linear(64, 4, 0)
    batch = step_batch(data, torch.arange(8), aug, np.random.default_rng(0), teacher)
    assert batch.x.shape == (8, 1, 8, 8) and batch.extra.shape == (8, 1, 8, 8)
    torch.testing.assert_close(batch.teacher_logits, teacher(batch.x))
    torch.testing.assert_close(batch.extra_teacher_logits, teacher(batch.extra))
    with pytest.raises(ValueError, match="no teacher"):
        step_batch(data, torch.arange(8), aug, np.random.default_rng(0), None)


def test_teacher_stream_rows_and_determinism():
    data = _digits_like(n=40)
    aug = augmentation_from_spec(
        {"name": "a", "steps": [], "append": [{"op": "mixup", "alpha": 1.0}]}
    )
    teacher = Linear(64, 4, 0)
    stream = list(teacher_stream(teacher, data, aug, seed=3, epochs=2, batch_size=16))
    # 40 rows in batches of 16: 16, 16, 8 per epoch; each batch doubled by x'.
    assert [len(p) for p in stream] == [32, 32, 16] * 2
    np.testing.assert_allclose(stream[0].sum(axis=1), 1.0, rtol=1e-6)
    again = list(teacher_stream(teacher, data, aug, seed=3, epochs=2, batch_size=16))
    assert all(np.array_equal(a, b) for a, b in zip(stream, again, strict=True))
    # steps_per_epoch: each epoch's first batches, the ones a student with that recipe sees
    cut = list(teacher_stream(teacher, data, aug, seed=3, epochs=2, batch_size=16,
                              steps_per_epoch=2))  # fmt: skip
    assert [len(p) for p in cut] == [32, 32] * 2
    assert all(np.array_equal(a, b) for a, b in zip(cut, stream[:2] + stream[3:5], strict=True))


# -- plan: prolonged training, pairs, validation ---------------------------------------


def test_prolonged_training_scales_epochs_and_milestones():
    recipe = {"epochs": 240, "batch_size": 64, "lr": 0.05, "milestones": [150, 180, 210]}
    scaled = plan.scaled_recipe(recipe, 2)
    assert scaled["epochs"] == 480 and scaled["milestones"] == [300, 360, 420]
    assert plan.scaled_recipe(recipe, 1) == recipe  # k = 1 leaves the spec untouched


def _config() -> dict:
    import yaml

    with open("config/config.yaml") as fh:
        return yaml.safe_load(fh)


def test_pairs_map_each_teacher_to_its_students():
    config = _config()
    exp = copy.deepcopy(config["experiments"]["das2020_mnist"])
    exp["teachers"]["archs"] = ["alexnet", "lenet"]
    exp["students"]["archs"] = {"alexnet": ["lenet"], "lenet": ["alexnet", "lenet"]}
    config["experiments"]["pairs"] = exp
    plan.check_config(config)
    students = [
        (c.teacher_arch, c.student_arch)
        for c in plan.experiment_cells(config, "pairs")
        if c.role == "student" and c.seed == 0 and c.teacher_aug == "none"
    ]
    assert students == [("alexnet", "lenet"), ("lenet", "alexnet"), ("lenet", "lenet")]
    exp["students"]["archs"] = {"resnet18": ["lenet"]}
    with pytest.raises(plan.ConfigError, match="not one of the teachers"):
        plan.check_config(config)


def test_appended_augmentations_are_for_kd_students_only():
    config = _config()
    config["augmentations"]["append_flip"] = {"steps": [], "append": [{"op": "flip"}]}
    exp = config["experiments"]["das2020_mnist"]
    exp["teachers"]["augmentations"] = ["append_flip"]
    with pytest.raises(plan.ConfigError, match="teachers have no teacher"):
        plan.check_config(config)


def test_student_spec_carries_append_pick_and_prolonged_recipe():
    config = _config()
    config["augmentations"]["append_pick"] = {
        "steps": [{"op": "flip"}],
        "append": [{"op": "cutmix"}],
        "pick": {"by": "student"},
    }
    config["kd_methods"]["kd_x2"] = {
        "loss": "hinton", "temperature": 4, "alpha": 0.9, "epochs_factor": 2
    }  # fmt: skip
    spec = plan.student_spec(config, "mnist", 0, "alexnet", "none", "kd_x2", "lenet", "append_pick")
    assert spec["augmentation"]["pick"] == {"by": "student"}
    assert (
        spec["recipe"]["epochs"] == 2 * config["datasets"]["mnist"]["training"]["student"]["epochs"]
    )
    inputs = plan.teacher_stats_inputs(
        config, "mnist", "0", "alexnet", "none", "kd_x2", "lenet", "append_pick"
    )
    assert inputs["student"].endswith("alexnet-none/kd_x2/lenet-append_pick/model.pt")
    config["augmentations"]["append_pick"]["pick"]["by"] = "teacher"
    inputs = plan.teacher_stats_inputs(
        config, "mnist", "0", "alexnet", "none", "kd_x2", "lenet", "append_pick"
    )
    assert set(inputs) == {"train", "teacher"}


def test_experiment_view_resolves_student_epochs_and_alpha():
    config = _config()
    view = plan.experiment_view(config, "wang2022_cifar100_epochs")
    assert view["student_epochs"]["kd_t4_x025"] == 60
    assert view["student_epochs"]["ce_only_x4"] == 960
    assert view["kd_alpha"]["ce_only"] == 0.0 and view["kd_alpha"]["kd_t4"] == 0.9
    assert plan.scaled_recipe({"epochs": 240, "milestones": [150, 180, 210]}, 0.25) == {
        "epochs": 60,
        "milestones": [38, 45, 52],  # round(37.5) = 38 (half to even), 45, round(52.5) = 52
    }
