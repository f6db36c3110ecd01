"""ImageFolder datasets (ImageNet, ImageNet-100) streamed from a local tree: the index,
the decoding source, the config checks, an end-to-end cell and the papers' experiments'
dry run (Wang et al. Tables 7-8, Choi et al. Table 2)."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image

from kdaug import plan
from kdaug.data import imagefolder
from kdaug.data.canonical import load_split, save_split
from kdaug.data.datasets import BUILDERS, build_split
from kdaug.train.engine import DeviceData, StreamData, TeacherLogits, seed_epoch

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("n01000001", "n01000002", "n01000003")
SIZES = [(40, 30), (50, 70), (64, 48), (33, 90)]  # (width, height) per image of a class
CROP, RESIZE = 32, 36


def make_tree(root: Path, per_class: int = 4, parts=("train", "val")) -> Path:
    """``root/<part>/<wnid>/*.JPEG``: random RGB JPEGs of mixed sizes, plus a stray file."""
    rng = np.random.default_rng(0)
    for part in parts:
        for c, wnid in enumerate(CLASSES):
            folder = root / part / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = SIZES[i % len(SIZES)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., c] = 255 - (pixels[..., c] // 4)  # a class-coloured tint
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)
            (folder / "notes.txt").write_text("not an image")
    return root


def params(root: Path | None, **extra) -> dict:
    return {"root": None if root is None else str(root), "dataset": "imagenet", "val_size": 0,
            "split_seed": 0, "image_size": CROP, "eval_resize": RESIZE, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def train_split(tree: Path):
    return build_split("imagefolder", "train", {}, params(tree))


# --------------------------------------------------------------------------- the index


def test_index_lists_the_tree_in_order_with_labels(tree: Path, train_split) -> None:
    split = train_split
    assert split.class_names == CLASSES
    assert len(split) == 12 and split.num_classes == 3
    assert split.paths[:4] == tuple(f"train/{CLASSES[0]}/{CLASSES[0]}_{i}.JPEG" for i in range(4))
    assert split.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all((tree / p).is_file() for p in split.paths)  # notes.txt is not listed
    again = build_split("imagefolder", "train", {}, params(tree))
    assert again.paths == split.paths
    assert again.provenance["listing"] == split.provenance["listing"]
    test = build_split("imagefolder", "test", {}, params(tree))
    assert test.paths[0].startswith("val/") and len(test) == 12
    assert test.provenance["listing"] != split.provenance["listing"]
    val = build_split("imagefolder", "val", {}, params(tree))
    assert len(val) == 0  # val_size 0: the papers' protocol, no holdout


def test_holdout_and_class_subset(tree: Path) -> None:
    held = build_split("imagefolder", "val", {}, params(tree, val_size=3))
    kept = build_split("imagefolder", "train", {}, params(tree, val_size=3))
    assert sorted(held.labels.tolist()) == [0, 1, 2]  # stratified
    assert set(held.paths).isdisjoint(kept.paths) and len(kept) == 9
    sub = build_split("imagefolder", "train", {}, params(tree, classes=[CLASSES[2], CLASSES[0]]))
    assert sub.class_names == (CLASSES[0], CLASSES[2]) and len(sub) == 8
    assert sub.labels.tolist() == [0] * 4 + [1] * 4
    with pytest.raises(FileNotFoundError, match="no folder for 1 of the 2 classes"):
        build_split("imagefolder", "train", {}, params(tree, classes=[CLASSES[0], "n09999999"]))
    assert len(imagefolder.CLASS_LISTS["cmc_imagenet100"]) == 100
    assert len(set(imagefolder.CMC_IMAGENET100)) == 100


def test_index_file_round_trip_and_lazy_images(tmp_path: Path, train_split) -> None:
    path = tmp_path / "train.npz"
    save_split(path, train_split)
    back = load_split(path)
    assert isinstance(back, imagefolder.ImageFolderSplit)
    assert back.paths == train_split.paths and back.class_names == CLASSES
    assert np.array_equal(back.labels, train_split.labels)
    assert (back.image_size, back.eval_resize) == (CROP, RESIZE)
    assert back.images.shape == (12, 3, CROP, CROP)
    rows = back.images[[0, 5]]
    assert rows.dtype == np.uint8 and rows.shape == (2, 3, CROP, CROP)
    assert np.array_equal(back.images[5], rows[1])
    with pytest.raises(TypeError, match="streamed from its image files"):
        np.asarray(back.images)


# --------------------------------------------------------------------------- decoding


def stream(split) -> StreamData:
    data = DeviceData.from_split(split, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
                                 torch.device("cpu"))  # fmt: skip
    assert isinstance(data, StreamData)
    return data


def test_training_batches_are_seeded_crops(train_split) -> None:
    data = stream(train_split)
    index = torch.tensor([0, 3, 5, 11, 7])

    def batch(seed: int, epoch: int) -> torch.Tensor:
        return data.pixels(index, seed_epoch(seed, epoch))

    a = batch(0, 0)
    assert a.shape == (5, 3, CROP, CROP) and a.dtype == torch.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a * 255, (a * 255).round())  # decoded uint8 pixels
    assert torch.equal(a, batch(0, 0))  # a pure function of seed and epoch
    assert not torch.equal(a, batch(0, 1))  # another epoch draws other crops
    assert not torch.equal(a, batch(1, 0))
    # the generator advances by a fixed count per image, whatever the files' sizes
    rng = seed_epoch(0, 0)
    data.pixels(index, rng)
    reference = seed_epoch(0, 0)
    reference.random((5, imagefolder.DRAWS_PER_IMAGE))
    assert rng.random() == reference.random()


def test_evaluation_transform_is_resize_then_centre_crop(tree: Path, train_split) -> None:
    from torchvision.transforms import v2

    data = stream(train_split)
    index = torch.arange(len(data))
    a, b = data.pixels(index), data.pixels(index)
    assert torch.equal(a, b)
    expected = v2.Compose([v2.PILToTensor(), v2.Resize(RESIZE, antialias=True),
                           v2.CenterCrop(CROP)])  # fmt: skip
    for row in (0, 1, 6):
        with Image.open(tree / train_split.paths[row]) as im:
            want = expected(im.convert("RGB"))
        got = train_split.decode(np.array([row]))[0]
        # PIL and tensor resizing round differently by at most a step or two
        assert np.abs(got.astype(int) - want.numpy().astype(int)).mean() < 2.0
    normalized = data.normalized(index[:2])
    assert torch.allclose(normalized, (a[:2] - data.mean) / data.std)


def test_resized_crop_box_follows_torchvision() -> None:
    rng = np.random.default_rng(1)
    for width, height in [(40, 30), (500, 375), (33, 90)]:
        for _ in range(200):
            top, left, h, w = imagefolder.resized_crop_box(width, height, rng.random(40))
            assert top >= 0 and top + h <= height and left >= 0 and left + w <= width
            assert h > 0 and w > 0
    # the first attempt decides when it fits: area share 0.08 + 0.92 u, log-ratio uniform
    u = np.zeros(40)
    u[:4] = [1.0, 0.5, 0.0, 0.999]  # the whole area at ratio 1: one position only
    assert imagefolder.resized_crop_box(100, 100, u) == (0, 0, 100, 100)
    u[:4] = [(0.25 - 0.08) / 0.92, 0.5, 0.999, 0.0]  # a quarter of the area: 50 x 50
    assert imagefolder.resized_crop_box(100, 100, u) == (50, 0, 50, 50)  # bottom-left
    # no attempt fits (always the whole area at ratio 4/3): torchvision's fallback, the
    # central crop at the clamped ratio
    u = np.tile([1.0, 1.0, 0.5, 0.5], 10)
    assert imagefolder.resized_crop_box(300, 100, u) == (0, 83, 100, 133)
    assert imagefolder.resized_crop_box(100, 100, u) == (0, 0, 100, 100)


def test_cached_teacher_logits_are_refused_on_a_stream(train_split) -> None:
    data = stream(train_split)
    with pytest.raises(ValueError, match="streamed with a random crop"):
        TeacherLogits.for_split(np.zeros((12, 3), np.float32), train_split.labels, data)
    with pytest.raises(TypeError, match=r"imagenet .*streamed"):
        _ = data.images


# --------------------------------------------------------------------------- config


def test_missing_root_names_the_key_and_the_layout(tmp_path: Path) -> None:
    with pytest.raises(imagefolder.MissingRootError, match=r"datasets\.imagenet\.root is not set"):
        build_split("imagefolder", "train", {}, params(None))
    (tmp_path / "train").mkdir()
    with pytest.raises(imagefolder.MissingRootError, match=r"has no val/ folder.*val/<wnid>"):
        build_split("imagefolder", "test", {}, params(tmp_path))
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    plan.check_config(config)  # the default run has no ImageNet experiment
    config["run"] = ["choi2023_imagenet"]
    with pytest.raises(plan.ConfigError, match=r"choi2023_imagenet.*datasets\.imagenet\.root"):
        plan.check_config(config)
    config["data"]["mirror"] = str(tmp_path)  # <mirror>/imagenet is missing
    with pytest.raises(plan.ConfigError, match=r"imagenet has no train/, val/ folder"):
        plan.check_config(config)


def test_config_wires_the_streamed_datasets(tree: Path) -> None:
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    assert BUILDERS.get("imagefolder").streams
    config["datasets"]["imagenet"]["root"] = str(tree)
    p = plan.dataset_params(config, "imagenet", "train")
    assert p["root"] == str(tree) and p["dataset"] == "imagenet" and p["image_size"] == 224
    config["datasets"]["imagenet100"]["root"] = None
    config["data"]["mirror"] = "/mirror"
    assert plan.dataset_params(config, "imagenet100", "test")["root"] == "/mirror/imagenet"
    # a stream crops anew every epoch: a plain KD student runs the teacher model
    inputs = plan.student_inputs(config, "imagenet", 0, "resnet34_imagenet", "standard",
                                 "kd_t4", "standard")  # fmt: skip
    assert "teacher" in inputs and "teacher_logits" not in inputs


def test_torchvision_resnets_match_torchvision() -> None:
    from kdaug.models import build_model, count_parameters

    for name, reference in (("resnet18_imagenet", torchvision.models.resnet18),
                            ("resnet34_imagenet", torchvision.models.resnet34)):  # fmt: skip
        ours = build_model(name, num_classes=1000, image_size=224)
        assert count_parameters(ours) == count_parameters(reference())
        logits, emb = ours.forward_with_embedding(torch.zeros(2, 3, 64, 64))
        assert logits.shape == (2, 1000) and emb.shape == (2, 512)


# --------------------------------------------------------------------------- end to end


def tiny_config(tree: Path) -> dict:
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    ds = config["datasets"]["imagenet"]
    ds.update(root=str(tree), image_size=CROP, eval_resize=RESIZE)
    recipe = {"epochs": 1, "batch_size": 4, "lr": 0.01, "momentum": 0.9,
              "weight_decay": 1e-4, "milestones": [], "gamma": 0.1}  # fmt: skip
    ds["training"] = {"teacher": dict(recipe), "student": dict(recipe)}
    for arch in ("resnet18_imagenet", "resnet34_imagenet"):
        config["architectures"][arch]["width"] = 0.125
    ds["teacher_weights"]["resnet34_imagenet"] = None  # trained here, not loaded
    return config


def test_a_cell_trains_and_evaluates_on_the_tree(tmp_path: Path, tree: Path) -> None:
    from kdaug.measure.extract import extract_outputs
    from kdaug.measure.metrics import EvalData, compute_metrics
    from kdaug.train.training import train_cell

    config = tiny_config(tree)
    paths = {}
    for split in ("train", "val", "test"):
        p = plan.dataset_params(config, "imagenet", split)
        paths[split] = str(tmp_path / f"{split}.npz")
        save_split(paths[split], build_split(p["builder"], split, {}, p))
    teacher_spec = plan.teacher_spec(config, "imagenet", 0, "resnet34_imagenet", "standard")
    state = train_cell(teacher_spec, train_path=paths["train"], val_path=paths["val"],
                       output=str(tmp_path / "teacher.pt"), threads=1)  # fmt: skip
    assert len(state.history) == 1 and math.isfinite(state.history[0]["train_loss"])
    # a Wang et al. student: the decoded batch x and its appended CutMixPick copy x'
    student_spec = plan.student_spec(
        config,
        "imagenet",
        0,
        "resnet34_imagenet",
        "standard",
        "kd_t4",
        "resnet18_imagenet",
        "append_cutmixpick_t",
    )
    state = train_cell(student_spec, train_path=paths["train"], val_path=paths["val"],
                       output=str(tmp_path / "student.pt"),
                       teacher_path=str(tmp_path / "teacher.pt"), threads=1)  # fmt: skip
    assert math.isfinite(state.history[0]["train_loss"])
    out = tmp_path / "outputs.npz"
    extract_outputs(tmp_path / "student.pt", {"test": paths["test"]}, out, threads=1,
                    embeddings_for=("test",))  # fmt: skip
    with np.load(out) as f:
        logits, labels = f["test.logits"], f["test.labels"]
        assert logits.shape == (12, 3) and f["test.embeddings"].shape[0] == 12
    again = tmp_path / "again.npz"
    extract_outputs(tmp_path / "student.pt", {"test": paths["test"]}, again, threads=1)
    with np.load(again) as f:
        assert np.array_equal(f["test.logits"], logits)  # evaluation is deterministic
    metrics = compute_metrics(EvalData(logits, labels, 3), ["accuracy", "top5_accuracy"])
    assert metrics["top5_accuracy"] == 1.0 and 0.0 <= metrics["accuracy"] <= 1.0


# --------------------------------------------------------------------------- dry run


@pytest.mark.workflow
def test_imagenet_experiments_dry_run(tmp_path: Path) -> None:
    """Wang et al.'s ImageNet-100 and ImageNet grids and Choi et al.'s Table 2 with a
    config layer naming a (fake) tree: the cells the config lists, per seed."""
    from test_workflow import job_counts, snakemake, workdir

    (tmp_path / "wf").mkdir()
    wd = workdir(tmp_path / "wf")
    fake = make_tree(tmp_path / "mirror" / "imagenet", per_class=1)
    experiments = ["wang2022_imagenet100_da", "wang2022_imagenet_da", "choi2023_imagenet"]
    # torchvision's ResNet34 weights, as the papers' ImageNet teacher (a stand-in file
    # named by its own hash, as torchvision names its files)
    weights = _weights_file(tmp_path, torchvision.models.resnet34(), "resnet34")
    layer = {"data": {"mirror": str(tmp_path / "mirror")}, "run": experiments,
             "datasets": {"imagenet": {"teacher_weights": {"resnet34_imagenet": {
                 "augmentation": "standard", "file": str(weights)}}}}}  # fmt: skip
    (wd / "config/imagenet.yaml").write_text(yaml.safe_dump(layer))
    out = snakemake(wd, "-n", "--cores", "4", "--resources", "gpu=1",
                    "--configfile", "config/imagenet.yaml").stdout  # fmt: skip
    counts = job_counts(out)
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    exps = {name: copy.deepcopy(config["experiments"][name]) for name in experiments}
    seeds = len(exps["choi2023_imagenet"]["seeds"])
    assert all(len(e["seeds"]) == seeds for e in exps.values())
    wang = {n: len(exps[n]["students"]["augmentations"]) for n in experiments[:2]}
    choi = len(exps["choi2023_imagenet"]["students"]["variants"])
    assert wang == {"wang2022_imagenet100_da": 9, "wang2022_imagenet_da": 9} and choi == 9
    # one resnet34 teacher per dataset and seed (Choi's ImageNet teacher is Wang's; on
    # ImageNet its job loads the published weights)
    assert counts["train_teacher"] == seeds * 2
    inputs = [line for line in out.splitlines() if line.strip().startswith("input:")]
    assert sum(str(weights) in line for line in inputs) == seeds
    assert counts["distill_student"] == seeds * (sum(wang.values()) + choi)
    assert counts["teacher_stats"] == seeds * sum(wang.values())
    assert counts["prepare_split"] == 2 * 3  # train, val (empty), test of each dataset
    assert "download_archive" not in counts  # nothing downloads
    assert fake.is_dir()


# --------------------------------------------------------------------------- paper tables


def test_choi_table2_shows_top1_and_top5_beside_the_paper() -> None:
    """Synthetic results of choi2023_imagenet: each cell is the mean over seeds in percent,
    beside Table 2's printed value found through paper_rows and paper_archs."""
    from kdaug.papers.choi2023 import ChoiResults, imagenet_table

    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    exp = plan.experiment_view(config, "choi2023_imagenet")
    rows = []
    for seed in (0, 1):
        base = {"teacher_arch": "resnet34_imagenet", "teacher_aug": "standard", "seed": seed,
                "selection": "last", "split": "test"}  # fmt: skip
        for metric, value in (("accuracy", 0.70), ("top5_accuracy", 0.90)):
            teacher = {"role": "teacher", "student_arch": "", "kd": "", "student_aug": ""}
            rows.append({**base, **teacher, "metric": metric, "value": value + seed / 100})
            rows.append({**base, "role": "student", "student_arch": "resnet18_imagenet",
                         "kd": "rescaled_kd", "student_aug": "fmu_a10", "metric": metric,
                         "value": value - 0.1 + seed / 100})  # fmt: skip
    table = imagenet_table(ChoiResults(rows, exp), "last")
    by_row = {keys[0]: cells for keys, cells in table.rows}
    assert list(by_row) == ["teacher"] + [
        f"{v['kd_method']}/{v['augmentation']}" for v in exp["students"]["variants"]
    ]
    top1, top5 = by_row["teacher"]
    assert top1.summary.mean == pytest.approx(70.5) and top1.paper == 73.31
    assert top5.summary.mean == pytest.approx(90.5) and top5.paper == 91.42
    top1, top5 = by_row["rescaled_kd/fmu_a10"]
    assert top1.summary.mean == pytest.approx(60.5) and top1.paper == 71.82
    assert top5.paper == 90.63 and top5.paper_decimals == 2
    assert by_row["ce_only/standard"][0].paper == 69.75  # the student row
    assert by_row["ce_only/standard"][0].summary.empty  # no results for it here


# --------------------------------------------------------- torchvision's pretrained teacher


def _weights_file(tmp_path: Path, model: torch.nn.Module, name: str) -> Path:
    """A state dict saved under torchvision's naming (``<name>-<sha256 prefix>.pth``)."""
    raw = tmp_path / "raw.pth"
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    return raw.rename(tmp_path / f"{name}-{digest[:8]}.pth")


def test_torchvision_weights_load_into_the_zoo_model_and_give_its_outputs(tmp_path) -> None:
    from kdaug.models.pretrained import WeightsFileError, load_torchvision_weights
    from kdaug.models.zoo import MODELS

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10)
    for m in reference.modules():  # BN statistics other than 0 / 1, so they must load
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    path = _weights_file(tmp_path, reference, "resnet18")
    ours = MODELS.get("resnet18_imagenet")(num_classes=10)
    load_torchvision_weights(ours, path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), reference.eval()(x), atol=1e-5)
    wrong = MODELS.get("resnet34_imagenet")(num_classes=10)
    with pytest.raises(WeightsFileError, match="122 tensors, the model has 218"):
        load_torchvision_weights(wrong, path)


def test_a_weights_file_not_matching_its_name_is_refused(tmp_path) -> None:
    from kdaug.models.pretrained import WeightsFileError, check_weights_file

    path = _weights_file(tmp_path, torchvision.models.resnet18(num_classes=2), "resnet18")
    assert check_weights_file(path, "k") == path
    bad = path.with_name("resnet18-00000000.pth")
    path.rename(bad)
    with pytest.raises(WeightsFileError, match=r"k: .*resnet18-00000000.pth: sha256 .* 00000000"):
        check_weights_file(bad, "k")
    with pytest.raises(WeightsFileError, match=r"k: .*resnet34-b627a593.pth not found \(fetch it"):
        check_weights_file(tmp_path / "resnet34-b627a593.pth", "k")


def test_the_imagenet_teacher_loads_published_weights(tmp_path: Path, tree: Path) -> None:
    """Both papers distil torchvision's pretrained ResNet34 on ImageNet: the teacher cell
    loads the weights file (no epoch trained) and gives torchvision's outputs; ImageNet-100's
    teacher, which the papers trained, still trains; a missing file is a config error."""
    from kdaug.train.training import load_trained, train_cell

    config = tiny_config(tree)
    torch.manual_seed(1)
    reference = torchvision.models.resnet34(num_classes=3).eval()
    weights = _weights_file(tmp_path, reference, "resnet34")
    config["architectures"]["resnet34_imagenet"]["width"] = 1.0
    config["datasets"]["imagenet"]["teacher_weights"]["resnet34_imagenet"] = {
        "augmentation": "standard", "file": str(weights)}  # fmt: skip
    spec = plan.teacher_spec(config, "imagenet", 0, "resnet34_imagenet", "standard")
    assert spec["pretrained"] == weights.name
    assert plan.teacher_inputs(config, "imagenet", 0, "resnet34_imagenet", "standard")[
        "weights"] == str(weights)  # fmt: skip
    assert "pretrained" not in plan.teacher_spec(config, "imagenet", 0, "resnet34_imagenet",
                                                 "fmu_a10")  # fmt: skip
    assert "pretrained" not in plan.teacher_spec(config, "imagenet100", 0, "resnet34_imagenet",
                                                 "standard")  # fmt: skip
    paths = {}
    for split in ("train", "val", "test"):
        p = plan.dataset_params(config, "imagenet", split)
        paths[split] = str(tmp_path / f"{split}.npz")
        save_split(paths[split], build_split(p["builder"], split, {}, p))
    state = train_cell(spec, train_path=paths["train"], val_path=paths["val"],
                       output=str(tmp_path / "teacher.pt"), weights_path=str(weights),
                       threads=1)  # fmt: skip
    assert state.history == []
    model, _ = load_trained(tmp_path / "teacher.pt", torch.device("cpu"))
    test = DeviceData.from_split(load_split(paths["test"]), [0.485, 0.456, 0.406],
                                 [0.229, 0.224, 0.225], torch.device("cpu"))  # fmt: skip
    x = test.normalized(torch.arange(4))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), atol=1e-4)
    config["run"] = ["choi2023_imagenet"]
    config["datasets"]["imagenet"]["teacher_weights"]["resnet34_imagenet"]["file"] = str(
        tmp_path / "resnet34-b627a593.pth")  # fmt: skip
    with pytest.raises(plan.ConfigError, match=r"teacher_weights\.resnet34_imagenet: .* not found"):
        plan.check_config(config)
