"""Issue 14's config and file holes: each mistake fails early with the key or file named,
and what was valid is kept (narrow slices, file modes, metrics records, long CSVs,
downloads)."""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdaug import plan
from kdaug.data.datasets import BUILDERS, DIGITS_CLASSES, DIGITS_IMAGES
from kdaug.data.download import ChecksumError, DownloadError, fetch_archive
from kdaug.io import TruncatedFileError, read_long_csv, write_json, write_long_csv
from kdaug.measure.evaluation import CorruptRecordError, collect

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [ROOT / "config/demo.yaml", ROOT / "tests/configs/fast.yaml"]


@pytest.fixture
def config() -> dict:
    """The demo slice's config (demo.yaml + fast.yaml, as the workflow tests layer them),
    with defaults the schema would add."""
    return plan.load_layered_config([ROOT / "config/config.yaml", *LAYERS])


def test_the_shipped_configs_pass_every_check() -> None:
    for layers in ([], LAYERS, [ROOT / "config/fashion.yaml"]):
        plan.check_config(plan.load_layered_config([ROOT / "config/config.yaml", *layers]))


# --------------------------------------------------------------- 3. narrow: slices, typos


def narrowed(config: dict, run: list[str], **narrow: list) -> dict:
    config["run"], config["narrow"] = run, narrow
    plan.apply_narrowing(config)
    return config


def test_a_slice_renders_under_its_own_name_and_leaves_the_full_experiment(config) -> None:
    full = copy.deepcopy(config["experiments"]["das2020_digits_mnist"])
    out = narrowed(config, ["das2020_digits_mnist"], teacher_augmentations=["none"])
    (name,) = out["run"]
    assert name.startswith("das2020_digits_mnist__narrow_")
    assert config["experiments"]["das2020_digits_mnist"] == full  # untouched
    assert out["experiments"][name]["teachers"]["augmentations"] == ["none"]
    assert out["experiments"][name]["students"] == full["students"]
    for path in plan.experiment_outputs(out, name):
        assert path.startswith(f"results/experiments/{name}/")
    cells = plan.experiment_cells(out, name)
    assert {c.teacher_aug for c in cells} == {"none"} and len(cells) == 2  # teacher, student


def test_the_slice_name_depends_on_the_narrow_lists_only(config) -> None:
    a = narrowed(copy.deepcopy(config), ["das2020_digits"], teacher_augmentations=["none", "mixup"])
    b = narrowed(copy.deepcopy(config), ["das2020_digits"], teacher_augmentations=["mixup", "none"])
    c = narrowed(copy.deepcopy(config), ["das2020_digits"], teacher_augmentations=["none"])
    assert a["run"] == b["run"] != c["run"]


def test_a_narrowing_that_keeps_everything_keeps_the_name(config) -> None:
    assert narrowed(config, ["das2020_digits_mnist"], seeds=[0])["run"] == ["das2020_digits_mnist"]


@pytest.mark.parametrize(
    ("key", "typo", "known"),
    [
        ("students", "lenett", "lenet"),
        ("teachers", "alexnett", "alexnet"),
        ("seeds", 7, "0"),
        ("teacher_augmentations", "cutmixx", "cutmix"),
        ("student_augmentations", "nonee", "none"),
    ],
)
def test_a_narrow_value_that_names_nothing_is_an_error(config, key, typo, known) -> None:
    # The command: students [lenett] passed and dropped every student.
    narrow = {"teacher_augmentations": ["none"], key: [typo]}
    with pytest.raises(plan.ConfigError, match=rf"narrow\.{key}: .*'{typo}'.*{known}"):
        narrowed(config, ["das2020_digits_mnist"], **narrow)


def test_a_value_of_another_run_experiment_is_not_a_typo(config) -> None:
    # resnet8 is a Wang student, not a Das one: the Das slice is left teacher-only.
    out = narrowed(config, ["das2020_digits_mnist", "wang2022_digits_da"], students=["resnet8"])
    das = out["experiments"][out["run"][0]]
    assert das["students"]["archs"] == [] and out["run"][1] == "wang2022_digits_da"


# --------------------------------------------------------------- 6. file modes and umask


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_mode_a_plain_open_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        (tmp_path / "plain").write_text("x")
        write_json(tmp_path / "a.json", {"a": 1})
        write_long_csv(tmp_path / "m.csv", [{"experiment": "e", "value": 1.0}])
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert (tmp_path / "plain").stat().st_mode & 0o777 == expected
    for name in ("a.json", "m.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.csv", "plain"]


# --------------------------------------------------------------- 9. config mistakes


def test_an_unknown_model_names_the_architecture(config) -> None:
    config["architectures"]["lenet"]["model"] = "lenet5"
    with pytest.raises(plan.ConfigError, match=r"architectures\.lenet\.model: .*'lenet5'.*alexnet"):
        plan.check_config(config)


def test_an_unknown_metric_is_named(config) -> None:
    config["evaluation"]["metrics"].append("acuracy")
    with pytest.raises(plan.ConfigError, match=r"evaluation\.metrics: .*'acuracy'.*accuracy"):
        plan.check_config(config)


def test_normalisation_needs_one_value_per_channel(config) -> None:
    config["datasets"]["digits"]["normalization"] = {"mean": [0.5] * 3, "std": [0.2] * 3}
    with pytest.raises(plan.ConfigError, match=r"datasets\.digits\.normalization.*1 channel"):
        plan.check_config(config)
    config["datasets"]["digits"]["normalization"] = {"mean": [0.5], "std": [0.2, 0.2]}
    with pytest.raises(plan.ConfigError, match=r"datasets\.digits\.normalization: mean has 1"):
        plan.check_config(config)


@pytest.mark.parametrize("std", [0.0, -0.3])
def test_a_normalisation_std_must_be_positive(config, std: float) -> None:
    # Before: training reported "diverged ... lower the lr".
    config["datasets"]["digits"]["normalization"]["std"] = [std]
    with pytest.raises(plan.ConfigError, match=r"datasets\.digits\.normalization\.std\[0\]"):
        plan.check_config(config)


@pytest.mark.parametrize(
    ("dataset", "key", "value", "pool"),
    [
        ("digits", "val_size", 1437, 1437),  # 1797 images less the 360 held out for test
        ("digits", "test_size", 1797, 1797),
        ("cifar10", "val_size", 60000, 50000),
    ],
)
def test_a_holdout_larger_than_the_data_is_named(config, dataset, key, value, pool) -> None:
    config["datasets"][dataset][key] = value
    with pytest.raises(plan.ConfigError, match=rf"datasets\.{dataset}\.{key}: {value} .*{pool}"):
        plan.check_config(config)


def test_the_builders_know_the_digits_without_building_them() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    assert len(digits.target) == DIGITS_IMAGES
    assert tuple(str(n) for n in digits.target_names) == DIGITS_CLASSES
    assert BUILDERS.get("digits").class_names == DIGITS_CLASSES


def test_a_vscore_group_with_unknown_classes_is_named(config) -> None:
    config["evaluation"]["vscore_groups"]["similar"] = ["3", "5", "8", "99"]
    with pytest.raises(plan.ConfigError, match=r"vscore_groups\.similar: .*digits lacks \['99'\]"):
        plan.check_config(config)


def test_a_vscore_group_for_another_dataset_is_not_an_error(config) -> None:
    # The metric skips groups the split lacks by design (CIFAR-100's on digits).
    config["evaluation"]["vscore_groups"]["cifar"] = ["baby", "boy", "girl"]
    plan.check_config(config)


def test_a_tsne_class_the_dataset_lacks_is_named(config) -> None:
    config["experiments"]["das2020_digits"]["figures"]["tsne_classes"] = ["1", "seven"]
    with pytest.raises(plan.ConfigError, match=r"das2020_digits\.figures\.tsne_classes"):
        plan.check_config(config)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"op": "cutot", "size": 12}, r"augmentations\.cutout\[0\]\.op: .*'cutot'.*cutout, flip"),
        ({"op": "cutout", "sise": 12}, r"augmentations\.cutout\[0\]: op 'cutout' .*'sise'.*size"),
    ],
)
def test_an_augmentation_op_typo_names_the_key_and_the_ops(config, step, message) -> None:
    config["augmentations"]["cutout"] = [step]
    with pytest.raises(plan.ConfigError, match=message):
        plan.check_augmentation_ops(config)


def test_an_op_typo_in_an_appended_copy_is_named(config) -> None:
    entry = config["augmentations"]["append_cutmix"]
    entry["append"] = [{"op": "cutmixx"}]
    with pytest.raises(plan.ConfigError, match=r"augmentations\.append_cutmix\.append\[0\]\.op"):
        plan.check_augmentation_ops(config)


def test_a_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  digits:\n    val_size: [1\n")
    with pytest.raises(plan.ConfigError, match=rf"{bad}:4:1: .*started at line 3"):
        plan.load_layered_config([ROOT / "config/demo.yaml", bad])
    bad.write_text("- a list\n")
    with pytest.raises(plan.ConfigError, match="mapping of keys"):
        plan.check_config_files([bad])


@pytest.mark.workflow
def test_the_snakefile_names_the_op_and_the_config_file_line(tmp_path: Path) -> None:
    from test_workflow import snakemake, workdir

    wd = workdir(tmp_path)
    (wd / "config/op.yaml").write_text("augmentations:\n  cutout:\n    - {op: cutot, size: 12}\n")
    proc = snakemake(wd, "-n", "--configfile", "config/demo.yaml", "config/op.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "augmentations.cutout[0].op: unknown augmentation op" in out
    assert "not valid under any of the given schemas" not in out
    with open(wd / "config/config.yaml", "a") as fh:
        fh.write("run: [a\n")
    lines = (wd / "config/config.yaml").read_text().count("\n")
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert f"config/config.yaml:{lines + 1}:1:" in proc.stdout + proc.stderr


# --------------------------------------------------------------- 10. files that point at the file

CELL = {"dataset": "digits", "seed": 0, "role": "teacher", "teacher_arch": "lenet",
        "teacher_aug": "none", "kd": None, "student_arch": None, "student_aug": None}  # fmt: skip


def metrics_record(path: Path, accuracy: float, **more: float) -> Path:
    splits = {"test": {"n": 3, "metrics": {"accuracy": accuracy}}}
    splits.update({split: {"n": 3, "metrics": {"accuracy": v}} for split, v in more.items()})
    write_json(path, {"cell": CELL, "selection": "last", "splits": splits})
    return path


def test_a_corrupt_metrics_file_is_named_with_its_rebuild(tmp_path: Path) -> None:
    good = metrics_record(tmp_path / "a/eval/last/metrics.json", 0.5)
    bad = metrics_record(tmp_path / "b/eval/last/metrics.json", 0.25)
    bad.write_text(bad.read_text()[:-20])  # cut short
    out = tmp_path / "metrics.csv"
    rebuild = rf"{bad}: not valid JSON.*delete it, or run snakemake {bad} -R evaluate_model"
    with pytest.raises(CorruptRecordError, match=rebuild):
        collect([good, bad], out, experiment="e")
    assert not out.exists()
    stats = tmp_path / "teacher_stats.json"
    stats.write_text('{"cell": {}}')
    with pytest.raises(CorruptRecordError, match=r"teacher_stats\.json: .* -R teacher_stats"):
        collect([stats], out, experiment="e")
    collect([good], out, experiment="e")
    assert [r["value"] for r in read_long_csv(out)] == ["0.5"]


def test_collect_keeps_the_experiments_splits_and_names_a_missing_one(tmp_path: Path) -> None:
    """A model's metrics file holds every split the experiments of `run` read of it; an
    experiment's CSV gets its own splits, and one its model was not evaluated on is an
    error naming the file and the fix."""
    both = metrics_record(tmp_path / "eval/last/metrics.json", 0.5, train=0.75)
    out = tmp_path / "metrics.csv"
    collect([both], out, experiment="e", splits=["test"])
    assert [(r["split"], r["value"]) for r in read_long_csv(out)] == [("test", "0.5")]
    collect([both], out, experiment="e")
    assert [(r["split"], r["value"]) for r in read_long_csv(out)] == [
        ("test", "0.5"), ("train", "0.75")]  # fmt: skip
    with pytest.raises(CorruptRecordError, match=rf"{both}: no metrics on shifted .*'e' to `run`"):
        collect([both], out, experiment="e", splits=["test", "shifted"])


def test_a_long_csv_cut_at_a_line_boundary_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    rows = [{"experiment": "e", "metric": "accuracy", "value": v} for v in (0.5, 0.25, 0.75)]
    write_long_csv(path, rows)
    assert [r["value"] for r in read_long_csv(path)] == ["0.5", "0.25", "0.75"]
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    for cut in ("".join(lines[:-1]), "".join(lines[:-2]), text[:-8]):
        path.write_text(cut)
        with pytest.raises(TruncatedFileError, match=rf"{path}: truncated .*-R collect_metrics"):
            read_long_csv(path)
    path.write_text("".join(lines[:2] + lines[3:]))  # a row lost, footer kept
    with pytest.raises(TruncatedFileError, match="2 rows of 3"):
        read_long_csv(path)
    write_long_csv(path, [])
    assert read_long_csv(path) == []


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_stalled_download_times_out_naming_the_url_and_the_mirror(
    tmp_path: Path, stalled_server: str
) -> None:
    dest = tmp_path / "downloads/cifar10/cifar-10-python.tar.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=rf"{stalled_server} failed.*data\.mirror"):
        fetch_archive("cifar10/cifar-10-python.tar.gz", stalled_server, "md5:" + "0" * 32,
                      dest, timeout=0.5)  # fmt: skip
    assert time.monotonic() - start < 10
    assert list(dest.parent.iterdir()) == []  # no file, no temporary


def test_a_bad_gzip_archive_is_named_not_its_temporary(tmp_path: Path) -> None:
    key = "mnist/t10k-labels-idx1-ubyte.gz"
    content = bytes(range(50))
    (tmp_path / "mirror/mnist").mkdir(parents=True)
    (tmp_path / "mirror" / key).write_bytes(gzip.compress(content)[:-10])  # cut short
    md5 = "md5:" + hashlib.md5(content).hexdigest()
    with pytest.raises(ChecksumError) as err:
        fetch_archive(key, "u", "md5:" + "0" * 32, tmp_path / "dl" / key, tmp_path / "mirror", md5)
    assert str(err.value).startswith(f"{key}: not a complete gzip file")
    assert ".tmp" not in str(err.value)


# ------------------------------------------- FT's initialisation-stage lr per student


def test_fts_init_stage_runs_at_0_01_for_resnets_and_at_the_students_lr_otherwise() -> None:
    """RepDistiller's helper/pretrain.py: 0.01 for ResNet/WRN students, else the student's
    lr (Choi et al. Table 1's VGG-8 at 0.05, MobileNetV2 at 0.01)."""
    config = plan.load_layered_config([ROOT / "config/config.yaml"])

    def ft_spec(tarch: str, sarch: str) -> dict:
        return plan.student_spec(config, "cifar100", 0, tarch, "standard", "ft", sarch, "standard")

    for tarch, sarch in (("resnet56", "resnet20"), ("wrn_40_2", "wrn_16_2")):
        spec = ft_spec(tarch, sarch)
        assert spec["kd"]["init_lr"] == 0.01 and "init_lr_students" not in spec["kd"]
    for tarch, sarch, lr in (("vgg13", "vgg8", 0.05), ("vgg13", "MobileNetV2", 0.01)):
        spec = ft_spec(tarch, sarch)
        assert "init_lr" not in spec["kd"] and "init_lr_students" not in spec["kd"]
        assert spec["recipe"]["lr"] == lr  # what the stage falls back to
    method = {"loss": "ft", "init_lr": 0.02}  # no list: every student
    assert plan.student_method(method, "vgg8") == method


def test_an_unknown_init_lr_student_is_named(config) -> None:
    config["kd_methods"]["ft"]["init_lr_students"] = ["resnet8", "resnet88"]
    with pytest.raises(plan.ConfigError, match=r"kd_methods\.ft\.init_lr_students: .*'resnet88'"):
        plan.check_config(config)
