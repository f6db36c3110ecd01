"""The KD method zoo (kdaug.train.methods): each method's term against a second, plain
implementation written from its paper / the benchmark's formula (numpy, loops), the
parameter counts of their heads, CRD's memory bank and negative sampling, one training
step per method (what changes and what does not), the initialisation stages, and the
model file round trip of a method's parts."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from kdaug import plan
from kdaug.data.canonical import Split, save_split
from kdaug.data.datasets import build_split
from kdaug.models import build_model, count_parameters
from kdaug.train.augment import build_augmentation
from kdaug.train.engine import DeviceData, Recipe, fit, step_batch, train_one_epoch
from kdaug.train.methods import (
    METHODS,
    ContrastMemory,
    NegativeSampler,
    Probe,
    build_method,
    build_objective,
    method_payload,
    nce_loss,
)
from kdaug.train.training import load_method, load_trained, read_model_file, train_cell

ROOT = Path(__file__).resolve().parents[1]
CONFIG = plan.load_layered_config([ROOT / "config/config.yaml"])
# RepDistiller's scripts/run_cifar_distill.sh weights, as config/config.yaml has them
BETA = {m: CONFIG["kd_methods"][m]["beta"] for m in METHODS}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on a shared, loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(name: str, **extra) -> dict:
    """The config's entry for a method as a listed student (resnet8: FT's init_lr applies)
    runs it (plan.student_method resolves the planning keys), plus what the tests change."""
    entry = plan.student_method(CONFIG["kd_methods"][name], "resnet8")
    entry.update(extra)
    return entry


def probe_of(student: list[tuple], teacher: list[tuple], n_data: int = 0) -> Probe:
    return Probe(tuple(student), tuple(teacher), n_data)


def n(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def norm_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def pool_np(f: np.ndarray, side: int) -> np.ndarray:
    """Average of equal square blocks (adaptive pooling when the side divides)."""
    b, c, h, _ = f.shape
    k = h // side
    return f.reshape(b, c, side, k, side, k).mean(axis=(3, 5))


# Two stages of maps plus a stem and an embedding: student 4 channels, teacher 6; the
# teacher's first stage map at twice the student's side (pooling is exercised).
S_SHAPES = [(3, 8, 8), (4, 4, 4), (5, 2, 2), (7,)]
T_SHAPES = [(3, 8, 8), (6, 8, 8), (5, 2, 2), (9,)]
B = 5


def features(shapes: list[tuple], seed: int) -> list[torch.Tensor]:
    return [rand(B, *s, seed=seed + i) for i, s in enumerate(shapes)]


def term(name: str, s_feats, t_feats, index=None, **params) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    method = build_method({"loss": name, "beta": 1.0, **params}, probe_of(S_SHAPES, T_SHAPES))
    sel_s, sel_t = method.select(s_feats), method.select(t_feats)
    with torch.no_grad():
        return method, method.term(sel_s, sel_t, index)


S, T = features(S_SHAPES, 0), features(T_SHAPES, 10)


# ------------------------------------------------------------------ loss formulas


def attention_np(f: np.ndarray) -> np.ndarray:
    a = (f**2).mean(axis=1).reshape(len(f), -1)
    return norm_rows(a)


def test_at_is_the_squared_difference_of_normalised_attention_maps() -> None:
    _, got = term("at", S, T)
    want = 0.0
    for fs, ft in zip(S[1:-1], T[1:-1], strict=True):
        fs, ft = n(fs), n(ft)
        if ft.shape[2] > fs.shape[2]:
            ft = pool_np(ft, fs.shape[2])
        want += ((attention_np(fs) - attention_np(ft)) ** 2).mean()
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_sp_is_the_frobenius_distance_of_row_normalised_batch_grams() -> None:
    _, got = term("sp", S, T)
    fs, ft = n(S[-2]).reshape(B, -1), n(T[-2]).reshape(B, -1)
    gs, gt = norm_rows(fs @ fs.T), norm_rows(ft @ ft.T)
    assert math.isclose(got.item(), ((gt - gs) ** 2).sum() / B**2, rel_tol=1e-5)


def test_cc_is_the_mean_product_of_consecutive_embedding_gaps() -> None:
    method, got = term("cc", S, T, feat_dim=3)
    es = n(S[-1]) @ n(method.embed_s.weight).T + n(method.embed_s.bias)
    et = n(T[-1]) @ n(method.embed_t.weight).T + n(method.embed_t.bias)
    delta = np.abs(es - et)
    want = np.mean([delta[i] @ delta[i + 1] for i in range(B - 1)])
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_vid_is_a_gaussian_nll_with_a_softplus_variance_starting_at_5() -> None:
    method, got = term("vid", S, T)
    want = 0.0
    for head, fs, ft in zip(method.heads, S[1:-1], T[1:-1], strict=True):
        var = np.log1p(np.exp(n(head.log_scale))) + 1e-5
        np.testing.assert_allclose(var, 5.0, rtol=1e-6)
        fs_t, ft_t = fs, ft
        if ft.shape[2] > fs.shape[2]:
            ft_t = torch.from_numpy(pool_np(n(ft), fs.shape[2])).float()
        with torch.no_grad():
            mean = n(head.mean(fs_t))
        v = var.reshape(1, -1, 1, 1)
        want += (0.5 * ((mean - n(ft_t)) ** 2 / v + np.log(v))).mean()
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def huber(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def test_rkd_is_distance_and_angle_huber_losses_weighted_25_and_50() -> None:
    _, got = term("rkd", S, T)

    def distances(e: np.ndarray) -> np.ndarray:
        d = np.array([[np.linalg.norm(a - b) for b in e] for a in e])
        return d / d[~np.eye(len(e), dtype=bool)].mean()

    def angles(e: np.ndarray) -> np.ndarray:
        out = np.zeros((len(e),) * 3)
        for i in range(len(e)):
            for j in range(len(e)):
                for k in range(len(e)):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out[i, j, k] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out.ravel()

    es, et = n(S[-1]), n(T[-1])
    want = 25 * huber(distances(es), distances(et)) + 50 * huber(angles(es), angles(et))
    assert math.isclose(got.item(), want, rel_tol=1e-4)


def test_pkt_is_the_kl_of_cosine_similarity_conditionals() -> None:
    _, got = term("pkt", S, T)

    def conditional(e: np.ndarray) -> np.ndarray:
        cos = norm_rows(e) @ norm_rows(e).T
        sim = (cos + 1) / 2
        return sim / sim.sum(axis=1, keepdims=True)

    ps, pt = conditional(n(S[-1])), conditional(n(T[-1]))
    assert math.isclose(got.item(), (pt * np.log(pt / ps)).mean(), rel_tol=1e-4, abs_tol=1e-7)


def test_nst_is_the_polynomial_kernel_mmd_of_normalised_channels() -> None:
    _, got = term("nst", S, T)
    want = 0.0
    for fs, ft in zip(S[1:-1], T[1:-1], strict=True):
        fs, ft = n(fs), n(ft)
        if ft.shape[2] > fs.shape[2]:
            ft = pool_np(ft, fs.shape[2])
        total = 0.0
        for b in range(B):
            xs, xt = (
                norm_rows(fs[b].reshape(len(fs[b]), -1)),
                norm_rows(ft[b].reshape(len(ft[b]), -1)),
            )
            k = lambda x, y: np.mean([(a @ c) ** 2 for a in x for c in y])  # noqa: E731
            total += k(xt, xt) + k(xs, xs) - 2 * k(xs, xt)
        want += total / B
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_ickd_is_the_distance_of_row_normalised_channel_grams() -> None:
    method, got = term("ickd", S, T)
    method.eval()  # BN in eval (identity statistics): the embedding is the 1x1 conv alone
    with torch.no_grad():
        fs = n(method.embed(S[-2]))
        got = method.term([S[-2]], [T[-2]], None)
    ft = n(T[-2])
    want = 0.0
    for b in range(B):
        xs, xt = fs[b].reshape(len(fs[b]), -1), ft[b].reshape(len(ft[b]), -1)
        want += ((norm_rows(xs @ xs.T) - norm_rows(xt @ xt.T)) ** 2).sum()
    assert math.isclose(got.item(), want / (fs.shape[1] * B), rel_tol=1e-5)


def test_fitnet_regresses_the_middle_stage_by_mean_squared_error() -> None:
    stages = [(3, 8, 8), (4, 8, 8), (5, 4, 4), (7,)]
    teacher = [(3, 8, 8), (6, 8, 8), (6, 2, 2), (9,)]
    torch.manual_seed(0)
    method = build_method(spec("fitnet"), probe_of(stages, teacher))
    conv = method.regressor[0]
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2)  # side 4 -> 2
    s, t = rand(B, 5, 4, 4), rand(B, 6, 2, 2, seed=1)
    with torch.no_grad():
        got = method.term([s], [t], None)
        want = ((n(method.regressor(s)) - n(t)) ** 2).sum() / t.numel()
    assert math.isclose(got.item(), want, rel_tol=1e-5)


@pytest.mark.parametrize(
    ("s_side", "t_side", "kind", "kernel"),
    [(8, 4, nn.Conv2d, (3, 3)), (4, 8, nn.ConvTranspose2d, (4, 4)), (6, 4, nn.Conv2d, (3, 3)),
     (4, 4, nn.Conv2d, (1, 1))],
)  # fmt: skip
def test_fitnet_regressor_maps_the_student_side_to_the_teachers(s_side, t_side, kind, kernel):
    method = build_method(
        spec("fitnet"),
        probe_of([(3, 8, 8), (2, 8, 8), (4, s_side, s_side), (5,)],
                 [(3, 8, 8), (2, 8, 8), (6, t_side, t_side), (5,)]),
    )  # fmt: skip
    conv = method.regressor[0]
    assert isinstance(conv, kind) and conv.kernel_size == kernel
    assert method.regressor(rand(2, 4, s_side, s_side)).shape == (2, 6, t_side, t_side)


def test_ab_boundary_loss_by_hand() -> None:
    """One pre-activation s per teacher sign, each side of the margin: only the neurons on
    the wrong side (or within the margin) of the teacher's boundary cost."""
    from kdaug.train.methods import boundary_loss

    s = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    off = torch.tensor([-1.0, -1.0, -1.0, -1.0])  # teacher neuron off everywhere
    on = -off
    # off: cost (s + 1)^2 where s > -1: -0.5 -> 0.25, 0.5 -> 2.25, 2 -> 9
    assert boundary_loss(s, off, 1.0).item() == pytest.approx(0.25 + 2.25 + 9)
    # on: cost (s - 1)^2 where s <= 1: -2 -> 9, -0.5 -> 2.25, 0.5 -> 0.25
    assert boundary_loss(s, on, 1.0).item() == pytest.approx(9 + 2.25 + 0.25)


def test_ab_init_loss_weights_stages_and_scales_by_batch() -> None:
    method = build_method(spec("ab"), probe_of(S_SHAPES, [(3, 8, 8), (4, 4, 4), (5, 2, 2), (9,)]))
    assert all(isinstance(c, nn.Identity) for c in method.connectors)  # equal shapes
    from kdaug.train.methods import boundary_loss

    t = features([(3, 8, 8), (4, 4, 4), (5, 2, 2), (9,)], 20)
    want = sum(w * boundary_loss(s, tt, 1.0).item()
               for w, s, tt in zip((0.5, 1.0), S[1:-1], t[1:-1], strict=True))  # fmt: skip
    assert method.init_loss(S, t).item() == pytest.approx(want / B / 1000 * 3, rel=1e-5)
    assert method.request is None  # its distillation epochs are plain cross-entropy


def test_ft_factor_loss_is_the_l1_of_normalised_factors() -> None:
    method, got = term("ft", S, T)
    with torch.no_grad():
        fs = n(method.translator(S[-2]))
        ft = n(method.paraphraser["encoder"](T[-2]))
    want = np.abs(attention_np(fs) - attention_np(ft)).mean()
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    assert fs.shape[1] == int(T_SHAPES[-2][0] * 0.5)


def test_total_loss_is_gamma_ce_plus_alpha_t2_kl_plus_beta_term() -> None:
    torch.manual_seed(0)
    method = build_method(
        {"loss": "sp", "gamma": 0.3, "alpha": 0.7, "beta": 2.0, "temperature": 3.0},
        probe_of(S_SHAPES, T_SHAPES),
    )
    logits, teacher, y = rand(B, 4), rand(B, 4, seed=1), torch.eye(4)[[0, 1, 2, 3, 0]]
    got = method(logits, y, teacher, S, T)
    p_s = torch.log_softmax(logits, 1)
    ce = -(y * p_s).sum(1).mean()
    q_t, q_s = torch.softmax(teacher / 3, 1), torch.log_softmax(logits / 3, 1)
    kl = (q_t * (q_t.log() - q_s)).sum(1).mean()
    want = 0.3 * ce + 0.7 * 9 * kl + 2.0 * method.term(method.select(S), method.select(T), None)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(method.distill_only(logits, teacher), 0.7 * 9 * kl)


def test_the_methods_and_weights_are_the_crd_benchmarks() -> None:
    assert set(METHODS) == {"fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "nst",
                            "crd", "ickd"}  # fmt: skip
    assert BETA == {"fitnet": 100, "at": 1000, "sp": 3000, "cc": 0.02, "vid": 1, "rkd": 1,
                    "pkt": 30000, "ab": 1, "ft": 200, "nst": 50, "crd": 0.8,
                    "ickd": 2.5}  # fmt: skip
    for name in METHODS:  # -r 1 -a 0: cross-entropy and the method's term, no KL
        assert (CONFIG["kd_methods"][name]["gamma"], CONFIG["kd_methods"][name]["alpha"]) == (1, 0)
    crd = CONFIG["kd_methods"]["crd"]
    assert (crd["nce_k"], crd["feat_dim"], crd["nce_m"], crd["nce_t"]) == (16384, 128, 0.5, 0.07)
    assert CONFIG["kd_methods"]["crd_kd"]["alpha"] == 1.0  # Wang et al.'s CRD rows: CRD+KD


def test_the_schema_knows_every_method() -> None:
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    losses = schema["properties"]["kd_methods"]["additionalProperties"]["properties"]["loss"]
    assert set(losses["enum"]) == {"hinton", "rescaled", *METHODS}


# ------------------------------------------------------------------ heads' parameters


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def test_head_parameter_counts_by_hand() -> None:
    """resnet8x4 student, resnet32x4 teacher at 32x32 (stem 32, stages 64-128-256)."""
    student = [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (256,)]
    teacher = [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (256,)]
    p = probe_of(student, teacher, n_data=100)

    def count(name: str, **extra) -> int:
        return count_parameters(build_method(spec(name, **extra), p))

    bn = lambda c: 2 * c  # noqa: E731
    assert count("fitnet") == conv(128, 128, 1) + bn(128)
    assert count("cc") == 2 * (256 * 128 + 128)
    assert count("crd") == 2 * (256 * 128 + 128)
    assert count("vid") == sum(c * c * 3 + c for c in (64, 128, 256))
    assert count("ickd") == 256 * 256 + bn(256)
    assert count("ab") == 0  # equal shapes: identity connectors
    half = 128
    paraphraser = conv(256, 256, 3) + conv(256, half, 3) + conv(half, half, 3)
    paraphraser += conv(half, half, 3) + conv(half, 256, 3) + conv(256, 256, 3)
    translator = conv(256, 256, 3) + conv(256, half, 3) + conv(half, half, 3)
    translator += bn(256) + bn(half) + bn(half)
    assert count("ft") == paraphraser + translator
    for name in ("at", "sp", "rkd", "pkt", "nst"):
        assert count(name) == 0
    # a wider teacher: AB's connectors and FitNet's regressor change the channel count
    wide = probe_of(student, [(32, 32, 32), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512,)])
    ab = build_method(spec("ab"), wide)
    assert count_parameters(ab) == sum(conv(c, 2 * c, 1) + bn(2 * c) for c in (64, 128, 256))
    fitnet = build_method(spec("fitnet"), wide)
    assert count_parameters(fitnet) == conv(128, 256, 1) + bn(256)


def test_crd_memory_bank_has_a_row_per_training_image_and_no_parameters() -> None:
    p = probe_of(S_SHAPES, T_SHAPES, n_data=50)
    method = build_method(spec("crd"), p, labels=torch.arange(50) % 5)
    assert method.memory.memory_s.shape == method.memory.memory_t.shape == (50, 128)
    assert not any(b is p_ for b in method.buffers() for p_ in method.parameters())
    state = method.state_dict()
    assert "memory.memory_s" in state and "sampler.labels" not in state  # labels not stored


# ------------------------------------------------------------------ CRD's bank and sampling


def test_memory_update_is_momentum_half_then_renormalised() -> None:
    torch.manual_seed(0)
    memory = ContrastMemory(dim=4, n_data=6, k=3, temperature=0.07, momentum=0.5)
    before_s, before_t = memory.memory_s.clone(), memory.memory_t.clone()
    v_s = torch.nn.functional.normalize(rand(2, 4), dim=1)
    v_t = torch.nn.functional.normalize(rand(2, 4, seed=1), dim=1)
    index = torch.tensor([1, 4])
    out_s, out_t = memory(v_s, v_t, index, torch.tensor([[0, 2, 3], [5, 0, 2]]))
    for bank, before, v in ((memory.memory_s, before_s, v_s), (memory.memory_t, before_t, v_t)):
        mixed = 0.5 * n(before[index]) + 0.5 * n(v)
        np.testing.assert_allclose(n(bank[index]), norm_rows(mixed), rtol=1e-6)
        untouched = [0, 2, 3, 5]
        torch.testing.assert_close(bank[untouched], before[untouched], rtol=0, atol=0)
    # scores: exp(<anchor, other bank's row> / T) / Z, Z = mean first score x n_data
    rows = np.array([[1, 0, 2, 3], [4, 5, 0, 2]])
    raw_s = np.exp(np.einsum("bkd,bd->bk", n(before_t)[rows], n(v_s)) / 0.07)
    np.testing.assert_allclose(n(out_s), raw_s / (raw_s.mean() * 6), rtol=1e-5)
    raw_t = np.exp(np.einsum("bkd,bd->bk", n(before_s)[rows], n(v_t)) / 0.07)
    np.testing.assert_allclose(n(out_t), raw_t / (raw_t.mean() * 6), rtol=1e-5)
    z = memory.z.clone()
    memory(v_s, v_t, index, torch.tensor([[0, 2, 3], [5, 0, 2]]))
    torch.testing.assert_close(memory.z, z)  # Z is set once


def test_nce_loss_by_hand() -> None:
    scores = torch.tensor([[0.5, 0.1, 0.2], [0.05, 0.3, 0.01]])
    noise = 2 / 10
    want = 0.0
    for row in scores.tolist():
        want += math.log(row[0] / (row[0] + noise + 1e-7))
        want += sum(math.log(noise / (x + noise + 1e-7)) for x in row[1:])
    assert nce_loss(scores, 10).item() == pytest.approx(-want / 2, rel=1e-6)


LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2, 2, 1])


def test_more_negatives_than_other_rows_are_drawn_with_replacement_uniformly() -> None:
    sampler = NegativeSampler(LABELS)
    torch.manual_seed(0)
    index = torch.tensor([0, 1, 2, 7])
    neg = sampler(index, 6000)
    assert neg.shape == (4, 6000)
    for row, i in zip(neg, index, strict=True):
        assert (LABELS[row] != LABELS[i]).all()
        others = (LABELS[i] != LABELS).nonzero().flatten()
        counts = torch.bincount(row, minlength=len(LABELS))[others].double()
        assert set(row.unique().tolist()) == set(others.tolist())  # every other row drawn
        assert (counts / counts.mean() - 1).abs().max() < 0.15  # uniform over them


def test_negatives_are_distinct_rows_of_other_classes_when_there_are_enough() -> None:
    sampler = NegativeSampler(LABELS)  # class 2 has 4 rows: every class has >= 6 others
    torch.manual_seed(0)
    index = torch.tensor([0, 1, 2, 7])
    hits = torch.zeros(len(index), len(LABELS))
    for _ in range(3000):
        neg = sampler(index, 5)
        assert neg.shape == (4, 5)
        for b, (row, i) in enumerate(zip(neg, index, strict=True)):
            assert len(row.unique()) == 5 and (LABELS[row] != LABELS[i]).all()
            hits[b, row] += 1
    for b, i in enumerate(index):  # each other row equally likely to be among the 5
        others = LABELS[i] != LABELS
        share = hits[b, others] / hits[b, others].mean()
        assert (share - 1).abs().max() < 0.1 and hits[b, ~others].sum() == 0


# ------------------------------------------------------------------ one training step

DEVICE = torch.device("cpu")


def digits_like(n_rows: int = 40, classes: int = 4, seed: int = 0) -> DeviceData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_rows, 3, 32, 32), dtype=np.uint8)
    labels = (np.arange(n_rows) % classes).astype(np.int64)
    split = Split(images, labels, tuple(str(c) for c in range(classes)))
    return DeviceData.from_split(split, [0.5] * 3, [0.25] * 3, DEVICE)


@pytest.fixture(scope="module")
def data() -> DeviceData:
    return digits_like()


@pytest.fixture(scope="module")
def teacher(data: DeviceData) -> nn.Module:
    """A resnet20 (half width) with calibrated BatchNorm statistics, frozen, in eval mode
    (an uncalibrated eval-mode net has exploding activations)."""
    torch.manual_seed(1)
    net = build_model("resnet20", num_classes=4, width=0.5)
    with torch.no_grad():
        for _ in range(20):
            net(data.normalized(torch.arange(len(data))))
    net.eval().requires_grad_(False)
    return net


def student_and_method(name: str, teacher: nn.Module, data: DeviceData, **extra):
    torch.manual_seed(0)
    student = build_model("resnet8", num_classes=4, width=0.5)
    entry = spec(name, **{"nce_k": 16} if name == "crd" else {}, **extra)
    method = build_objective(entry, student=student, teacher=teacher, input_shape=(3, 32, 32),
                             labels=data.labels)  # fmt: skip
    return student, method


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


CROP = build_augmentation("crop", [{"op": "crop", "padding": 4}])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_trains_the_student_and_the_methods_own_parts(name, teacher, data) -> None:
    no_init = {"init_epochs": 0} if name in ("ab", "ft") else {}
    student, method = student_and_method(name, teacher, data, **no_init)
    s0, m0, t0 = snapshot(student), snapshot(method), snapshot(teacher)
    trained = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD([*student.parameters(), *trained], lr=0.1, momentum=0.9)
    train_one_epoch(student, opt, data, CROP, method, teacher, np.random.default_rng(0), 8,
                    max_steps=1)  # fmt: skip
    assert changed(t0, teacher) == set()  # the teacher never changes, BN statistics included
    weights = {k for k, _ in student.named_parameters()}
    assert weights <= changed(s0, student)  # every student weight got a gradient
    moved = changed(m0, method)
    own = {k for k, p in method.named_parameters() if p.requires_grad}
    assert own <= moved  # the method's trainable parts train with the student
    frozen = {k for k, p in method.named_parameters() if not p.requires_grad}
    assert not (frozen & moved)  # AB's connectors, FT's paraphraser: not in this stage
    if name == "crd":
        assert {"memory.memory_s", "memory.memory_t", "memory.z"} <= moved


def test_plain_kd_reads_no_features(teacher, data, monkeypatch) -> None:
    """Hinton KD's step runs the models' plain forward only (no feature lists built)."""
    from kdaug.models.base import Classifier
    from kdaug.train.losses import HintonKD

    def refuse(*args, **kwargs):
        raise AssertionError("forward_features called for a logit loss")

    monkeypatch.setattr(Classifier, "forward_features", refuse)
    torch.manual_seed(0)
    student = build_model("resnet8", num_classes=4, width=0.5)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    train_one_epoch(student, opt, data, CROP, HintonKD(4.0, 0.9), teacher,
                    np.random.default_rng(0), 8, max_steps=1)  # fmt: skip


def test_crd_gets_the_batch_rows_indices(teacher, data) -> None:
    from kdaug.train.methods import Features

    index = torch.tensor([3, 7, 9])
    batch = step_batch(data, index, CROP, np.random.default_rng(0), teacher, request=Features())
    torch.testing.assert_close(batch.index, index)
    assert len(batch.teacher_features) == len(teacher.feature_cuts) + 1


def test_feature_methods_refuse_cached_teacher_logits(teacher, data) -> None:
    from kdaug.train.engine import TeacherLogits
    from kdaug.train.methods import Features

    cache = TeacherLogits(torch.zeros(len(data), 4))
    with pytest.raises(ValueError, match="teacher model"):
        step_batch(data, torch.arange(4), build_augmentation("none", []),
                   np.random.default_rng(0), cache, request=Features())  # fmt: skip
    with pytest.raises(ValueError, match="teacher model"):
        build_objective(spec("at"), student=build_model("resnet8", num_classes=4), teacher=cache,
                        input_shape=(3, 32, 32))  # fmt: skip


@pytest.mark.parametrize(
    "augmentation",
    [
        {"steps": [{"op": "crop", "padding": 4}], "append": [{"op": "cutmix", "alpha": 1.0}],
         "pick": {"by": "teacher"}},
        [{"op": "mixup", "alpha": 1.0}],
    ],
    ids=["appended_cutmixpick", "mixup"],
)  # fmt: skip
def test_crd_kd_with_wangs_appended_copy_and_with_mixup(augmentation, teacher, data) -> None:
    """The method's loss on x, the KL term on x' (or on the mixed batch)."""
    from kdaug.train.augment import augmentation_from_spec

    aug = augmentation_from_spec({"name": "a", **(
        augmentation if isinstance(augmentation, dict) else {"steps": augmentation})})  # fmt: skip
    student, method = student_and_method("crd", teacher, data, alpha=1.0, temperature=4.0)
    s0 = snapshot(student)
    opt = torch.optim.SGD([*student.parameters(), *method.parameters()], lr=0.1)
    row = train_one_epoch(student, opt, data, aug, method, teacher, np.random.default_rng(0), 8,
                          max_steps=2)  # fmt: skip
    assert math.isfinite(row["train_loss"]) and changed(s0, student)


# ------------------------------------------------------------------ initialisation stages


@pytest.mark.parametrize("name", ["ab", "ft"])
def test_init_stage_trains_the_connectors_first(name, teacher, data) -> None:
    student, method = student_and_method(name, teacher, data, init_epochs=1)
    if name == "ab":  # a wider teacher's stages, so that AB has connectors to train
        torch.manual_seed(1)
        wide = build_model("resnet20", num_classes=4, width=1.0).eval().requires_grad_(False)
        student, method = student_and_method(name, wide, data, init_epochs=1)
        teacher = wide
    m0 = snapshot(method)
    logs: list[str] = []
    recipe = Recipe(epochs=1, batch_size=8, lr=0.05, steps_per_epoch=2)
    state = fit(student, data, None, recipe=recipe, augmentation=CROP, loss_fn=method, seed=0,
                teacher=teacher, log=logs.append)  # fmt: skip
    assert state.init_losses is not None and len(state.init_losses) == 1
    assert any(line.startswith("init epoch 1/1") for line in logs)
    parts = "connectors" if name == "ab" else "paraphraser"
    assert any(k.startswith(parts) for k in changed(m0, method))
    assert all(not p.requires_grad for p in getattr(method, parts).parameters())


def test_ab_init_stage_leaves_the_linear_head_alone(data) -> None:
    from kdaug.train.engine import Speed, run_init_stage

    torch.manual_seed(1)
    wide = build_model("resnet20", num_classes=4, width=1.0).eval().requires_grad_(False)
    student, method = student_and_method("ab", wide, data, init_epochs=1)
    s0 = snapshot(student)
    recipe = Recipe(epochs=1, batch_size=8, lr=0.05, steps_per_epoch=2)
    run_init_stage(student, method.init_stage, data, recipe=recipe, augmentation=CROP,
                   teacher=wide, seed=0, speed=Speed("fp32", "off", "off"),
                   log=lambda s: None)  # fmt: skip
    moved = changed(s0, student)
    assert "fc.weight" not in moved and "fc.bias" not in moved
    assert any(k.startswith("layers.") for k in moved)


# ------------------------------------------------------------------ model file round trip

DIGITS = {"image_size": 32, "test_size": 360, "val_size": 144, "split_seed": 0,
          "shift": {"seed": 1, "contrast": 0.6, "noise_std": 24.0}}  # fmt: skip


def cell_spec(role: str, **extra) -> dict:
    return {
        "role": role,
        "dataset": "digits",
        "seed": 0,
        "arch": {"name": "resnet8", "model": "resnet8", "width": 0.25},
        "augmentation": {"name": "standard", "steps": [{"op": "crop", "padding": 4}]},
        "recipe": {"epochs": 1, "batch_size": 32, "lr": 0.05, "steps_per_epoch": 2},
        "normalization": {"mean": [0.3053], "std": [0.3760]},
        **extra,
    }


def test_model_file_round_trips_the_methods_parts(tmp_path: Path) -> None:
    for split in ("train", "val"):
        save_split(tmp_path / f"{split}.npz", build_split("digits", split, {}, DIGITS))
    paths = {"train_path": str(tmp_path / "train.npz"), "val_path": str(tmp_path / "val.npz")}
    train_cell(cell_spec("teacher"), output=str(tmp_path / "teacher.pt"), threads=1, **paths)
    kd = {"name": "crd", **spec("crd", nce_k=32)}
    student = cell_spec("student", teacher={"arch": "resnet8", "augmentation": "standard"},
                        kd=kd)  # fmt: skip
    out = tmp_path / "student.pt"
    train_cell(student, output=str(out), teacher_path=str(tmp_path / "teacher.pt"), threads=1,
               **paths)  # fmt: skip
    payload = read_model_file(out)  # weights_only load, spec checked
    stored = payload["method"]
    assert stored["loss"] == "crd" and stored["probe"]["n_data"] == 1797 - 360 - 144
    method = load_method(out, DEVICE)
    for k, v in method.state_dict().items():
        torch.testing.assert_close(v, stored["state_dict"][k], rtol=0, atol=0)
    assert method.memory.z.min() > 0  # Z was set in training and came back
    model, _ = load_trained(out, DEVICE)  # the student alone still loads as before
    assert model.embedding_dim == 16


def test_payload_rebuilds_every_method_from_its_probe() -> None:
    p = probe_of(S_SHAPES, T_SHAPES, n_data=20)
    for name in METHODS:
        torch.manual_seed(0)
        labels = torch.arange(20) % 4 if name == "crd" else None
        original = build_method(spec(name), p, labels)
        stream = io.BytesIO()
        torch.save(method_payload(original), stream)
        stream.seek(0)
        back = torch.load(stream, weights_only=True)  # plain values and tensors only
        torch.manual_seed(1)  # other initial weights: the state must overwrite them all
        rebuilt = build_method(spec(name), Probe.from_dict(back["probe"]))
        rebuilt.load_state_dict(back["state_dict"])
        for k, v in original.state_dict().items():
            torch.testing.assert_close(rebuilt.state_dict()[k], v, rtol=0, atol=0)


# ------------------------------------------------------------------ resuming, planning


@pytest.mark.parametrize("name", ["crd", "ft"])
def test_a_resumed_run_ends_where_the_uninterrupted_one_does(name, teacher, data, tmp_path):
    """The method's parts, CRD's memory bank and Z, and the initialisation stage's outcome
    are checkpointed: killing after epoch 1 and resuming repeats the 2-epoch run exactly."""
    extra = {"init_epochs": 1} if name == "ft" else {}

    def run(epochs: int, checkpoint: Path | None) -> tuple[nn.Module, nn.Module]:
        student, method = student_and_method(name, teacher, data, **extra)
        recipe = Recipe(epochs=epochs, batch_size=8, lr=0.05, steps_per_epoch=2)
        fit(student, data, None, recipe=recipe, augmentation=CROP, loss_fn=method, seed=0,
            teacher=teacher, checkpoint=checkpoint, log=lambda s: None)  # fmt: skip
        return student, method

    full_student, full_method = run(2, None)
    ckpt = tmp_path / "model.pt.ckpt"
    run(1, ckpt)
    assert "method" in torch.load(ckpt, weights_only=True)
    student, method = run(2, ckpt)
    for mine, theirs in ((student, full_student), (method, full_method)):
        for k, v in theirs.state_dict().items():
            torch.testing.assert_close(mine.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_feature_methods_read_the_teacher_model_never_cached_logits() -> None:
    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    args = (config, "digits_rd", 0, "resnet20", "standard")
    assert "teacher_logits" in plan.student_inputs(*args, "kd_t4", "none")
    for kd in ("crd", "at", "ab"):  # alpha 0: no KL, still the teacher's features
        inputs = plan.student_inputs(*args, kd, "none")
        assert "teacher" in inputs and "teacher_logits" not in inputs


def test_an_appended_copy_needs_a_kl_term() -> None:
    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    exp = config["experiments"]["wang2022_digits_accuracy"]
    exp["students"]["kd_methods"].append("crd")
    exp["students"]["variants"].append({"kd_method": "crd", "augmentation": "append_cutmix"})
    with pytest.raises(plan.ConfigError, match="'crd' with 'append_cutmix'"):
        plan.check_config(config)
    exp["students"]["variants"][-1]["augmentation"] = "standard"  # crd alone on x: fine
    plan.check_config(config)
