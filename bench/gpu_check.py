"""One command that runs every CUDA path of the pipeline once and prints one table.

    .venv/bin/python bench/gpu_check.py            # on a machine with a GPU (<= 8 minutes)
    .venv/bin/python bench/gpu_check.py --cpu      # tiny sizes on the CPU (CI runs it)

Paths, per model of the configured grid (``--models`` narrows; ``--cpu`` uses two small
ones): the training step eager fp32, bf16 autocast, channels_last, both, compiled
(``torch.compile`` default) and CUDA graphs (``reduce-overhead``), each against the pure
compute ceiling under the same settings; then a student reading cached teacher logits;
two training processes sharing the GPU at once (what ``runtime.gpu_slots: 2`` allows);
and a real model file trained, evaluated (``extract_outputs``) and attacked (FGSM,
I-FGSM) on the device; and a job run by a preload server (kdaug.preload) on the device.
``--cpu`` skips the paths that need CUDA (compile, CUDA graphs)
and marks them so. The table (path | ok | img/s | ours / ceiling) is printed and written
to ``--out`` (default ``results/gpu_check.md``); the exit status is 1 if any path failed.
Figures, not a test: nothing here fails on a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tp  # the throughput bench's measurements
from kdaug import plan
from kdaug.train.engine import Speed, TeacherLogits
from kdaug.train.losses import HintonKD

ROOT = Path(__file__).resolve().parents[1]
SPEEDS = {
    "eager fp32": Speed("fp32", "off", "off"),
    "bf16 autocast": Speed("bf16", "off", "off"),
    "channels_last": Speed("fp32", "on", "off"),
    "bf16 + channels_last": Speed("bf16", "on", "off"),
    "compiled (default)": Speed("bf16", "on", "default"),
    "CUDA graphs (reduce-overhead)": Speed("bf16", "on", "reduce-overhead"),
}
NEEDS_CUDA = {"compiled (default)", "CUDA graphs (reduce-overhead)"}
# One model per family by default (each is compiled twice: about a minute each); --models
# adds any architecture of config/config.yaml.
GPU_MODELS = ["resnet18", "resnet56", "MobileNetV2"]
CPU_MODELS = {"lenet": {"model": "lenet", "width": 0.5}, "resnet8": {"model": "resnet8"}}


@dataclass
class Row:
    path: str
    ok: str  # "ok", "FAILED: ...", "skipped: ..."
    rate: float | None = None
    ceiling: float | None = None

    def markdown(self) -> str:
        rate = f"{self.rate:.0f}" if self.rate else "-"
        ratio = f"{self.rate / self.ceiling:.2f}" if self.rate and self.ceiling else "-"
        return f"| {self.path} | {self.ok} | {rate} | {ratio} |"


@dataclass
class Check:
    device: torch.device
    batch: int
    steps: int
    shape: tuple[int, int, int]
    classes: int
    rows: list[Row]

    def attempt(self, path: str, measure: Callable[[], tuple[float | None, float | None]]):
        """Run one path; a failure is a row, not the end of the check."""
        tic = time.perf_counter()
        try:
            rate, top = measure()
            self.rows.append(Row(path, "ok", rate, top))
        except Exception as error:  # every failure becomes a row; the exit status says it
            traceback.print_exc()
            self.rows.append(Row(path, f"FAILED: {type(error).__name__}: {error}"[:120]))
        print(f"{self.rows[-1].markdown()}  ({time.perf_counter() - tic:.1f} s)", flush=True)

    def common(self, arch: dict[str, Any]) -> tuple:
        return (arch, self.batch, self.steps, self.shape, self.classes, self.device)


def check_model(check: Check, name: str, arch: dict[str, Any]) -> None:
    for label, speed in SPEEDS.items():
        path = f"{name}: {label}"
        if label in NEEDS_CUDA and check.device.type != "cuda":
            check.rows.append(Row(path, "skipped: needs CUDA"))
            continue
        speed = speed.resolve(check.device)
        check.attempt(
            path,
            lambda speed=speed: (
                tp.ours(*check.common(arch), speed),
                tp.ceiling(*check.common(arch), speed),
            ),
        )


def check_cached_teacher(check: Check, teacher_arch: dict, student_arch: dict) -> None:
    def measure() -> tuple[float, float]:
        speed = Speed().resolve(check.device)
        data = tp.synthetic(check.batch * check.steps, check.shape, check.classes, check.device)
        teacher = tp.new_model(teacher_arch, check.classes, check.shape, check.device).eval()
        logits = tp.teacher_logits(teacher, data).cpu().numpy()
        cache = TeacherLogits.for_split(logits, data.labels.cpu().numpy(), data)
        common = check.common(student_arch)
        cached = tp.ours(*common, speed, teacher=cache, loss=HintonKD(4.0, 0.9))
        return cached, tp.ceiling(*common, speed)

    check.attempt("student reading cached teacher logits", measure)


def check_shared_device(check: Check, name: str, args: argparse.Namespace) -> None:
    """Two processes training at once on the one device (``gpu_slots: 2``): both must
    finish; the rate is their images per second together."""

    def measure() -> tuple[float, None]:
        command = [sys.executable, __file__, "--worker", name, *(["--cpu"] if args.cpu else [])]
        tic = time.perf_counter()
        workers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [w.communicate(timeout=300)[0] for w in workers]
        if any(w.returncode for w in workers):
            raise RuntimeError(f"a worker failed: {[w.returncode for w in workers]}")
        images = sum(json.loads(o.strip().splitlines()[-1])["images"] for o in outs)
        return images / (time.perf_counter() - tic), None

    check.attempt(f"{name}: two jobs sharing the device", measure)


def worker(name: str, args: argparse.Namespace) -> None:
    """One of the two processes of :func:`check_shared_device`."""
    check = new_check(args)
    arch = models(args)[name]
    for _ in range(3):
        tp.ours(*check.common(arch), Speed().resolve(check.device))
    # ours() runs 1 warm-up + 2 timed epochs per call
    print(json.dumps({"images": 3 * 3 * check.batch * check.steps}))


def check_model_file(check: Check, arch: dict[str, Any]) -> None:
    """Train a real (tiny) cell, then evaluate and attack its model file on the device."""
    from kdaug.data.canonical import Split, save_split
    from kdaug.measure.extract import extract_outputs
    from kdaug.measure.robustness import attack_file
    from kdaug.train.training import train_cell

    folder = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    rng = np.random.default_rng(0)
    n, (c, h, w) = 4 * check.batch, check.shape
    labels = np.arange(n) % check.classes
    images = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    split = Split(images, labels.astype(np.int64), tuple(map(str, range(check.classes))))
    for name in ("train", "val", "test"):
        save_split(folder / f"{name}.npz", split)
    spec = {
        "role": "teacher", "dataset": "check", "seed": 0, "arch": {"name": "m", **arch},
        "augmentation": {"name": "none", "steps": []},
        "recipe": {"epochs": 1, "batch_size": check.batch, "lr": 0.01},
        "normalization": {"mean": [0.5] * c, "std": [0.25] * c},
    }  # fmt: skip
    model = folder / "model.pt"
    cell = {"role": "teacher", "dataset": "check", "seed": 0, "teacher_arch": "m",
            "teacher_aug": "none", "kd": None, "student_arch": None,
            "student_aug": None}  # fmt: skip

    def train() -> tuple[float, None]:
        tic = time.perf_counter()
        train_cell(spec, train_path=str(folder / "train.npz"), val_path=str(folder / "val.npz"),
                   output=str(model))  # fmt: skip
        return n / (time.perf_counter() - tic), None

    def extract() -> tuple[float, None]:
        tic = time.perf_counter()
        extract_outputs(model, {"test": folder / "test.npz"}, folder / "test_outputs.npz")
        return n / (time.perf_counter() - tic), None

    def attack() -> tuple[float, None]:
        tic = time.perf_counter()
        attack_file(model, folder / "test.npz", folder / "attacks.json", cell=cell,
                    selection="last", split="test", eps=[2 / 255, 8 / 255], steps=3)  # fmt: skip
        return n / (time.perf_counter() - tic), None

    check.attempt("model file: train_cell (1 epoch)", train)
    check.attempt("model file: extract_outputs", extract)
    check.attempt("model file: FGSM + I-FGSM (3 steps)", attack)


PRELOADED_JOB = """
import sys
from kdaug.preload import hand_over, in_child
hand_over(setting="on")
import torch
device = "cuda" if torch.cuda.is_available() and "--cpu" not in sys.argv else "cpu"
torch.manual_seed(0)
x = torch.randn(256, 256, device=device, requires_grad=True)
(x @ x).sum().backward()
print("child" if in_child() else "own-process", device, float(x.grad.sum()))
"""


def check_preloaded_job(check: Check, args: argparse.Namespace) -> None:
    """A job forked by a preload server (kdaug.preload) uses the device: the server
    never starts CUDA, so the child can (``runtime.preload: auto`` stays off on GPU
    machines until this row has said ok)."""

    def measure() -> tuple[None, None]:
        folder = Path(tempfile.mkdtemp(prefix="gpu_check_preload_"))
        script = folder / "job.py"
        script.write_text(PRELOADED_JOB)
        env = {**os.environ, "KDAUG_PRELOAD_DIR": str(folder / "run"), "KDAUG_PRELOAD_IDLE": "10"}
        command = [sys.executable, str(script), *(["--cpu"] if args.cpu else [])]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        deadline = time.monotonic() + 120
        while not any((folder / "run").glob("*.sock")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no preload server came up: {first.stderr[-300:]}")
            time.sleep(0.2)
        forked = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        words = forked.stdout.split()
        expected = ["child", check.device.type]
        if forked.returncode or words[:2] != expected or first.stdout.split()[2:] != words[2:]:
            raise RuntimeError(
                f"forked job said {forked.stdout!r} {forked.stderr[-300:]!r} "
                f"(wanted {expected} and the first run's {first.stdout!r})"
            )
        return None, None

    check.attempt("job forked by the preload server", measure)


def models(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    if args.cpu:
        return CPU_MODELS
    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    return {n: config["architectures"][n] for n in args.models or GPU_MODELS}


def new_check(args: argparse.Namespace) -> Check:
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print("no CUDA device: run with --cpu for the CPU smoke run", file=sys.stderr)
        sys.exit(2)
    device = torch.device("cuda" if cuda else "cpu")
    if args.cpu:
        return Check(device, 16, 2, (3, 32, 32), 10, [])
    return Check(device, 128, 20, (3, 32, 32), 100, [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (CI)")
    parser.add_argument("--models", nargs="*", help="architectures of config/config.yaml")
    parser.add_argument("--out", default="results/gpu_check.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args)
        return 0
    check = new_check(args)
    start = time.perf_counter()
    name = torch.cuda.get_device_name(check.device) if check.device.type == "cuda" else "CPU"
    print(f"| path | ok | img/s | ours / ceiling |  ({name}, torch {torch.__version__})")
    archs = models(args)
    for model_name, arch in archs.items():
        check_model(check, model_name, arch)
    first, *rest = archs.values()
    check_cached_teacher(check, rest[0] if rest else first, first)
    check_shared_device(check, next(iter(archs)), args)
    check_model_file(check, first)
    check_preloaded_job(check, args)
    table = "\n".join(
        [f"GPU check on {name} (torch {torch.__version__}), "
         f"{time.perf_counter() - start:.0f} s", "",
         "| path | ok | img/s | ours / ceiling |", "|---|---|---|---|",
         *(r.markdown() for r in check.rows)]
    )  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(f"\n{table}\n\nwritten to {out}")
    return 1 if any(r.ok.startswith("FAILED") for r in check.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
