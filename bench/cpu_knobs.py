"""CPU knobs per model: training img/s of each speed setting, as ratios to plain fp32 NCHW.

Not a test: it prints a table (and writes it with ``--out``). For each model of the demo
and Fashion-MNIST configs at the configs' widths and batch size 128 on 1x32x32 images: one
SGD step (forward, cross-entropy, backward, step) on a fixed batch, timed over ``--steps``
steps after a warm-up, for

- fp32 / bf16 autocast (``runtime.precision``),
- NCHW / channels_last (``runtime.channels_last``),
- 1 thread, and 2 threads in one process (``runtime.threads``; the alternative is two
  1-thread jobs side by side: 2 x the 1-thread figure, which the table prints too),
- ``--compile``: torch.compile (inductor's C++ backend), fp32 NCHW, 1 thread.

    .venv/bin/python bench/cpu_knobs.py [--steps 20] [--compile] [--out results/cpu_knobs.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from kdaug.models import build_model

# (label, model, width): the demo's and config/fashion.yaml's architectures
MODELS = [
    ("lenet", "lenet", 1.0),
    ("alexnet w0.5", "alexnet", 0.5),
    ("resnet8 w0.5", "resnet8", 0.5),
    ("resnet20 w0.5", "resnet20", 0.5),
    ("resnet18 w0.125", "resnet18", 0.125),
]
BATCH = 128


def img_per_s(
    model_name: str, width: float, *, bf16: bool, channels_last: bool, threads: int,
    steps: int, compiled: bool = False,
) -> float:  # fmt: skip
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = build_model(model_name, num_classes=10, in_channels=1, image_size=32, width=width)
    x, y = torch.randn(BATCH, 1, 32, 32), torch.randint(0, 10, (BATCH,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    for _ in range(3 if compiled else 2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - start)


def measure(steps: int, compiled: bool) -> pd.DataFrame:
    rows = []
    for label, name, width in MODELS:
        settings = {
            "fp32 NCHW 1 thread": dict(bf16=False, channels_last=False, threads=1),
            "bf16 NCHW 1 thread": dict(bf16=True, channels_last=False, threads=1),
            "fp32 channels_last 1 thread": dict(bf16=False, channels_last=True, threads=1),
            "bf16 channels_last 1 thread": dict(bf16=True, channels_last=True, threads=1),
            "fp32 NCHW 2 threads": dict(bf16=False, channels_last=False, threads=2),
            "fp32 channels_last 2 threads": dict(bf16=False, channels_last=True, threads=2),
        }
        row = {"model": label}
        for setting, kwargs in settings.items():
            row[setting] = img_per_s(name, width, steps=steps, **kwargs)
        if compiled:
            row["compiled fp32 NCHW 1 thread"] = img_per_s(
                name, width, bf16=False, channels_last=False, threads=1, steps=steps,
                compiled=True,
            )  # fmt: skip
        print(f"{label}: " + ", ".join(f"{k} {v:.0f}" for k, v in row.items() if k != "model"),
              flush=True)  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    images = measure(args.steps, args.compile)
    base = images["fp32 NCHW 1 thread"]
    ratios = images.div(base, axis=0)
    ratios["two 1-thread jobs, fp32 NCHW"] = 2.0
    table = (
        "img/s (batch 128, 1x32x32, one SGD step):\n\n"
        + images.round(0).astype(int).to_markdown()
        + "\n\nratio to fp32 NCHW 1 thread (two 1-thread jobs side by side = 2.0):\n\n"
        + ratios.round(2).to_markdown()
        + "\n"
    )
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
