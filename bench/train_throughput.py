"""Training throughput of the pipeline against a plain DataLoader/PIL baseline and the
pure-compute ceiling, per model of the grid, and the grid's projected wall time.

Not a test: it prints figures. For each architecture the configured experiments train, at
its dataset's configured batch size, in one run:

- ours:     the pipeline's engine (uint8 data resident on the device, crop + flip on
            whole batches on the device, ``runtime`` precision / layout / compile);
- baseline: a torchvision ``DataLoader`` over PIL images with ``RandomCrop`` +
            ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` workers, float32,
            the same model, loss and optimizer;
- ceiling:  forward + backward + SGD step on one synthetic batch already on the device
            (same precision / layout / compile as ours): no data pipeline at all.

Then a student distilled with an online teacher against the same student reading cached
teacher logits, and the projected wall time of every training cell of the configured
experiments (epochs x train images / measured img/s; extraction, metrics and rendering
are not counted). Run on a GPU for real figures; ``--quick`` runs tiny sizes on the CPU
so that CI exercises the script. ``--methods TEACHER:STUDENT`` adds img/s of every KD
method of the config (one entry per method, kdaug.train.methods) for that pair at the
student's batch, against plain KD with the same online teacher.

    .venv/bin/python bench/train_throughput.py                 # default config, all models
    .venv/bin/python bench/train_throughput.py --quick         # CPU smoke run (CI)
    .venv/bin/python bench/train_throughput.py --methods resnet32x4:resnet8x4
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdaug import plan
from kdaug.data.canonical import Split
from kdaug.train.augment import build_augmentation
from kdaug.train.engine import (
    DeviceData,
    Speed,
    TeacherLogits,
    train_one_epoch,
    trained_parameters,
)
from kdaug.train.losses import CrossEntropy, HintonKD
from kdaug.train.methods import METHODS, build_objective
from kdaug.train.training import build_cell_model, keep_freed_memory

# Official training-set sizes and image shapes (the canonical files need not exist here);
# the pipeline's train split is the official one minus the config's validation holdout.
OFFICIAL = {
    "cifar10": (50000, (3, 32, 32)),
    "cifar100": (50000, (3, 32, 32)),
    "mnist": (60000, (1, 32, 32)),
    "fashion_mnist": (60000, (1, 32, 32)),
    "tiny_imagenet": (100000, (3, 64, 64)),
    "digits": (1797, (1, 32, 32)),
}
CLASSES = {"cifar100": 100, "tiny_imagenet": 200}


def official_name(ds: Mapping[str, Any], dataset: str) -> str:
    """Which official dataset a config entry reads: its builder, its own name, or the
    folder of its archives (``fashion_rd`` reads ``fashion-mnist/...``)."""
    archives = [path.split("/")[0].replace("-", "_") for path in ds.get("archives", {}).values()]
    for name in (ds["builder"], dataset, *archives):
        if name in OFFICIAL:
            return name
    raise KeyError(f"datasets.{dataset}: the bench knows no official size for it")


def train_size(config: Mapping[str, Any], dataset: str) -> tuple[int, tuple[int, int, int]]:
    ds = config["datasets"][dataset]
    official, shape = OFFICIAL[official_name(ds, dataset)]
    held = int(ds.get("val_size", 0)) + int(ds.get("test_size", 0))
    return official - held, shape


def synthetic(n: int, shape: tuple[int, int, int], classes: int, device) -> DeviceData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.int64)
    split = Split(images, labels, tuple(str(c) for c in range(classes)))
    return DeviceData.from_split(split, [0.5] * shape[0], [0.25] * shape[0], device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], int], device: torch.device, repeats: int = 5) -> float:
    """img/s of ``run`` (returns images done); the first call warms up (and compiles)."""
    run()
    best = math.inf
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        images = run()
        sync(device)
        best = min(best, (time.perf_counter() - tic) / images)
    return 1.0 / best


def new_model(arch: Mapping[str, Any], classes: int, shape, device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_cell_model(arch, classes, shape).to(device)


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def sgd_step(forward, optimizer, x, y, speed: Speed | None = None) -> None:
    """One plain cross-entropy SGD step (under ``speed``'s autocast, if given)."""
    with speed.autocast(x.device) if speed else contextlib.nullcontext():
        loss = F.cross_entropy(forward(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ours(arch, batch, steps, shape, classes, device, speed, teacher=None, loss=None) -> float:
    data = synthetic(batch * steps, shape, classes, device)
    model = new_model(arch, classes, shape, device)
    forward = speed.prepare(model)
    optimizer = sgd(model)
    aug = build_augmentation("crop_flip", [{"op": "crop", "padding": 4}, {"op": "flip"}])
    if isinstance(teacher, TeacherLogits):
        aug = build_augmentation("none", [])  # cached logits: unaugmented students only
    rng = np.random.default_rng(0)

    def run() -> int:
        train_one_epoch(
            model,
            optimizer,
            data,
            aug,
            loss or CrossEntropy(),
            teacher,
            rng,
            batch,
            speed=speed,
            forward=forward,
        )
        return batch * steps

    return timed(run, device)


def baseline(arch, batch, steps, shape, classes, device, workers: int) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, shape[1], shape[2], shape[0]), dtype=np.uint8)
    mode = "L" if shape[0] == 1 else "RGB"
    transform = transforms.Compose(
        [
            transforms.RandomCrop(shape[1], padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * shape[0], [0.25] * shape[0]),
        ]
    )

    class PilImages(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            img = Image.fromarray(images[i].squeeze(-1) if mode == "L" else images[i], mode)
            return transform(img), i % classes

    loader = DataLoader(
        PilImages(),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    model = new_model(arch, classes, shape, device)
    optimizer = sgd(model)

    def run() -> int:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sgd_step(model, optimizer, x, y)
        return batch * steps

    rate = timed(run, device)
    # persistent workers prefetch the next epoch and live on with the loader: stop them
    # here, or they compete with the next measurement for the CPU
    loader = None  # the last reference: its iterator shuts the workers down
    gc.collect()
    return rate


def ceiling(arch, batch, steps, shape, classes, device, speed) -> float:
    model = new_model(arch, classes, shape, device)
    forward = speed.prepare(model)
    optimizer = sgd(model)
    x = torch.randn(batch, *shape, device=device)
    if speed.channels_last == "on":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % classes

    def run() -> int:
        for _ in range(steps):
            sgd_step(forward, optimizer, x, y, speed)
        return batch * steps

    return timed(run, device)


def forward_rate(arch, batch, steps, shape, classes, device, speed) -> float:
    """Eval-mode forward img/s: what an online teacher costs a student per image."""
    model = new_model(arch, classes, shape, device).eval()
    speed.lay_out(model)
    x = torch.randn(batch, *shape, device=device)

    @torch.no_grad()
    def run() -> int:
        for _ in range(steps):
            with speed.autocast(device):
                model(x)
        return batch * steps

    return timed(run, device)


def grid_workloads(config: Mapping[str, Any]) -> tuple[list[dict], set[tuple[str, str, str]]]:
    """Training cells of every configured experiment (each once) and the (dataset, arch,
    role) triples whose rates the projection needs."""
    cells, seen, needed = [], set(), set()
    for experiment in config["run"]:
        for cell in plan.experiment_cells(config, experiment):
            if cell in seen:
                continue
            seen.add(cell)
            ds = config["datasets"][cell.dataset]
            if cell.role == "teacher":
                recipe, arch = ds["training"]["teacher"], cell.teacher_arch
                mode = "teacher"
            else:
                method = config["kd_methods"][cell.kd]
                recipe = plan.scaled_recipe(
                    ds["training"]["student"], method.get("epochs_factor", 1)
                )
                arch = cell.student_arch
                inputs = plan.student_inputs(
                    config,
                    cell.dataset,
                    cell.seed,
                    cell.teacher_arch,
                    cell.teacher_aug,
                    cell.kd,
                    cell.student_aug,
                )
                appended = plan.is_appended(config, cell.student_aug)
                # online: runs the teacher every step; cached: reads its logits; alone: CE
                mode = "online" if "teacher" in inputs else "alone"
                mode = "cached" if "teacher_logits" in inputs else mode
                mode = "appended" if appended else mode
            cells.append(
                {
                    "experiment": experiment,
                    "dataset": cell.dataset,
                    "arch": arch,
                    "teacher": cell.teacher_arch,
                    "mode": mode,
                    "epochs": recipe["epochs"],
                    "batch": recipe["batch_size"],
                }
            )
            needed.add((cell.dataset, arch, "train"))
            if mode in ("online", "appended"):
                needed.add((cell.dataset, cell.teacher_arch, "forward"))
    return cells, needed


def projected_seconds(cell: Mapping[str, Any], rates: Mapping, config) -> float:
    n, _ = train_size(config, cell["dataset"])
    per_image = 1.0 / rates[(cell["dataset"], cell["arch"], "train")]
    if cell["mode"] in ("online", "appended"):
        per_image += 1.0 / rates[(cell["dataset"], cell["teacher"], "forward")]
    if cell["mode"] == "appended":  # x and x' each pass through student and teacher
        per_image *= 2
    return cell["epochs"] * n * per_image


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: the config, the device and how steps run there."""

    config: dict[str, Any]
    device: torch.device
    speed: Speed
    steps: int
    workers: int
    quick: bool

    def workload(self, dataset: str, role: str) -> tuple[int, tuple[int, int, int], int]:
        """(batch size, image shape, classes) of a dataset's teacher or student recipe."""
        _, shape = train_size(self.config, dataset)
        classes = CLASSES.get(official_name(self.config["datasets"][dataset], dataset), 10)
        batch = int(self.config["datasets"][dataset]["training"][role]["batch_size"])
        return (min(batch, 32) if self.quick else batch), shape, classes


def measure_models(bench: Bench, models: list[tuple[str, str]]) -> tuple[dict, list[dict]]:
    """Ours, baseline and ceiling per model (printed as a table) and the rates the
    projection needs: ``(dataset, arch, "train" | "forward") -> img/s``."""
    rates: dict[tuple[str, str, str], float] = {}
    rows = []
    print(
        "\n| dataset | model | batch | ours img/s | baseline img/s | ceiling img/s | "
        "ours/baseline | ours/ceiling |\n|---|---|---|---|---|---|---|---|"
    )
    for dataset, name in models:
        batch, shape, classes = bench.workload(dataset, "teacher")
        common = (
            bench.config["architectures"][name],
            batch,
            bench.steps,
            shape,
            classes,
            bench.device,
        )
        r = {
            "ours": ours(*common, bench.speed),
            "baseline": baseline(*common, bench.workers),
            "ceiling": ceiling(*common, bench.speed),
        }
        rates[(dataset, name, "train")] = r["ours"]
        rates[(dataset, name, "forward")] = forward_rate(*common, bench.speed)
        rows.append({"dataset": dataset, "model": name, "batch": batch, **r})
        print(
            f"| {dataset} | {name} | {batch} | {r['ours']:.0f} | {r['baseline']:.0f} | "
            f"{r['ceiling']:.0f} | {r['ours'] / r['baseline']:.2f} | "
            f"{r['ours'] / r['ceiling']:.2f} |",
            flush=True,
        )
    return rates, rows


def teacher_logits(teacher: torch.nn.Module, data: DeviceData, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        rows = [
            torch.arange(i, min(i + chunk, len(data)), device=data.labels.device)
            for i in range(0, len(data), chunk)
        ]
        return torch.cat([teacher(data.normalized(r)).float() for r in rows])


def measure_cache(bench: Bench, cells: list[dict], models: list[tuple[str, str]]) -> dict | None:
    """A student with an online teacher vs the same student reading cached teacher logits,
    for the first timed (teacher, student) pair of the grid (cached-logit cells first)."""
    pairs = (
        (c["dataset"], c["teacher"], c["arch"])
        for c in sorted(cells, key=lambda c: c["mode"] != "cached")
        if c["mode"] != "teacher"
        and {(c["dataset"], c["arch"]), (c["dataset"], c["teacher"])} <= set(models)
    )
    pair = next(pairs, None)
    if pair is None:
        return None
    dataset, tname, sname = pair
    batch, shape, classes = bench.workload(dataset, "student")
    data = synthetic(batch * bench.steps, shape, classes, bench.device)
    teacher = new_model(bench.config["architectures"][tname], classes, shape, bench.device).eval()
    bench.speed.lay_out(teacher)
    logits = teacher_logits(teacher, data).cpu().numpy()
    cache = TeacherLogits.for_split(logits, data.labels.cpu().numpy(), data)
    common = (
        bench.config["architectures"][sname],
        batch,
        bench.steps,
        shape,
        classes,
        bench.device,
        bench.speed,
    )
    online = ours(*common, teacher=teacher, loss=HintonKD(4.0, 0.9))
    cached = ours(*common, teacher=cache, loss=HintonKD(4.0, 0.9))
    print(
        f"\nStudent {sname} of teacher {tname} ({dataset}, batch {batch}): online teacher "
        f"{online:.0f} img/s, cached teacher logits {cached:.0f} img/s: {cached / online:.2f}x",
        flush=True,
    )
    return {"pair": f"{tname} -> {sname}", "online": online, "cached": cached}


def method_entries(config: Mapping[str, Any]) -> list[str]:
    """Plain KD (``kd_t4``, else the first Hinton entry) and one ``kd_methods`` entry per
    method of the zoo (the one named like the method where there is one)."""
    entries = config["kd_methods"]
    hinton = [k for k, m in entries.items() if m["loss"] == "hinton" and m["alpha"] > 0]
    names = ["kd_t4" if "kd_t4" in entries else hinton[0]]
    for method in METHODS:
        own = [k for k, m in entries.items() if m["loss"] == method]
        if own:
            names.append(method if method in own else own[0])
    return names


@dataclass(frozen=True)
class MethodWorkload:
    """One pair's student arch, frozen teacher, batches and training labels."""

    student: Mapping[str, Any]
    teacher: torch.nn.Module
    data: DeviceData
    labels: torch.Tensor  # the full training split's (CRD's bank and sampler)
    batch: int
    shape: tuple[int, int, int]
    classes: int


def method_rate(bench: Bench, work: MethodWorkload, entry: Mapping[str, Any]) -> float:
    """img/s of a student trained with KD method ``entry`` (heads included)."""
    student = new_model(work.student, work.classes, work.shape, bench.device)
    loss = build_objective(entry, student=student, teacher=work.teacher,
                           input_shape=work.shape, labels=work.labels)  # fmt: skip
    forward = bench.speed.prepare(student)
    optimizer = torch.optim.SGD(trained_parameters(student, loss), lr=0.01, momentum=0.9)
    aug = build_augmentation("crop_flip", [{"op": "crop", "padding": 4}, {"op": "flip"}])
    rng = np.random.default_rng(0)

    def run() -> int:
        train_one_epoch(student, optimizer, work.data, aug, loss, work.teacher, rng, work.batch,
                        speed=bench.speed, forward=forward)  # fmt: skip
        return work.batch * bench.steps

    return timed(run, bench.device)


def measure_methods(bench: Bench, pair: str, cells: list[dict]) -> list[dict]:
    """img/s of each KD method (:func:`method_entries`) for one ``teacher:student`` pair at
    the student's batch: crop+flip batches, the online teacher (feature methods need it),
    the method's heads trained with the student; CRD's memory bank and negative sampler
    sized for the dataset's full training split."""
    tname, sname = pair.split(":")
    datasets = [c["dataset"] for c in cells if (c["teacher"], c["arch"]) == (tname, sname)]
    dataset = datasets[0] if datasets else next(c["dataset"] for c in cells)
    batch, shape, classes = bench.workload(dataset, "student")
    n_train, _ = train_size(bench.config, dataset)
    arch = bench.config["architectures"]
    teacher = new_model(arch[tname], classes, shape, bench.device).eval().requires_grad_(False)
    bench.speed.lay_out(teacher)
    work = MethodWorkload(
        arch[sname], teacher, synthetic(batch * bench.steps, shape, classes, bench.device),
        torch.arange(n_train, device=bench.device) % classes, batch, shape, classes,
    )  # fmt: skip
    print(f"\n{tname} -> {sname} ({dataset}, batch {batch}, online teacher)\n"
          "| KD method | loss | img/s | vs plain KD |\n|---|---|---|---|")  # fmt: skip
    rows: list[dict] = []
    for kd in method_entries(bench.config):
        entry = plan.student_method(bench.config["kd_methods"][kd], sname)
        rate = method_rate(bench, work, entry)
        rows.append({"kd": kd, "loss": entry["loss"], "img_s": rate})
        print(f"| {kd} | {entry['loss']} | {rate:.0f} | {rate / rows[0]['img_s']:.2f} |",
              flush=True)  # fmt: skip
    return rows


def print_projection(bench: Bench, cells: list[dict], rates: dict) -> dict[str, float]:
    """Projected training time per experiment (only the timed models' cells with --quick)."""
    if bench.quick:
        cells = [
            c
            for c in cells
            if (c["dataset"], c["arch"], "train") in rates
            and (c["mode"] == "teacher" or (c["dataset"], c["teacher"], "forward") in rates)
        ]
    totals: dict[str, float] = defaultdict(float)
    for cell in cells:
        totals[cell["experiment"]] += projected_seconds(cell, rates, bench.config)
    print("\n| experiment | training cells | projected training time |\n|---|---|---|")
    for experiment, seconds in totals.items():
        count = sum(c["experiment"] == experiment for c in cells)
        print(f"| {experiment} | {count} | {seconds / 60:.1f} min |")
    print(f"| **all** | {len(cells)} | **{sum(totals.values()) / 3600:.2f} h** |")
    if bench.quick:
        print("(--quick: only the cells of the timed models, at CPU speed)")
    return dict(totals)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", nargs="+", default=["config/config.yaml"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="batches per measurement")
    parser.add_argument("--workers", type=int, default=4, help="baseline DataLoader workers")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU smoke run: few steps, batch <= 32, the grid's small models",
    )
    parser.add_argument(
        "--methods",
        metavar="TEACHER:STUDENT",
        help="also time every KD method of the config for this pair (img/s vs plain KD)",
    )
    parser.add_argument(
        "--malloc",
        choices=["keep", "default"],
        default="keep",
        help="CPU: keep freed memory as the pipeline's jobs do (keep_freed_memory), or "
        "glibc's default (the knob's baseline)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = plan.load_layered_config(args.config)
    plan.check_config(config)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(int(config["runtime"].get("threads", 1)))
        if args.malloc == "keep":
            keep_freed_memory()
    bench = Bench(
        config,
        device,
        Speed.from_config(config["runtime"]).resolve(device),
        steps=args.steps or (3 if args.quick else 50),
        workers=0 if args.quick else args.workers,
        quick=args.quick,
    )
    print(
        f"# device {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}), "
        f"precision {bench.speed.precision}, channels_last {bench.speed.channels_last}, "
        f"compile {bench.speed.compile}, {bench.steps} batches per figure"
        + ("" if cuda else f", malloc {args.malloc}"),
        flush=True,
    )
    cells, needed = grid_workloads(config)
    models = sorted({(d, a) for d, a, kind in needed if kind == "train"})
    if args.quick:  # the CPU smoke run: models small enough to time in seconds
        small = {"lenet", "resnet8", "resnet20"}
        models = [m for m in models if config["architectures"][m[1]]["model"] in small][:2]
    rates, rows = measure_models(bench, models)
    cache = measure_cache(bench, cells, models)
    methods = measure_methods(bench, args.methods, cells) if args.methods else None
    totals = print_projection(bench, cells, rates)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": str(device),
                    "speed": bench.speed.__dict__,
                    "models": rows,
                    "cache": cache,
                    "methods": methods,
                    "projected_seconds": totals,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
