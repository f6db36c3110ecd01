"""The benchmark scripts run end to end at CPU sizes (`make bench-quick`, `make gpu-check
--cpu`), so they cannot rot between the runs that measure with them. They print figures;
nothing here judges a timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_throughput_bench_quick_with_every_kd_method_of_the_demo() -> None:
    """The demo layers its own FT entry over config.yaml's (init_lr_students included):
    every method must build from the config entries as the bench reads them."""
    out = run("bench/train_throughput.py", "--quick", "--steps", "2", "--methods",
              "resnet20:resnet8", "--config", "config/config.yaml", "config/demo.yaml")  # fmt: skip
    assert "| KD method | loss | img/s | vs plain KD |" in out
    rows = [line.split(" | ")[0].strip("| ") for line in out.splitlines()]
    for method in ("kd_t4", "fitnet", "at", "crd", "ickd", "ft", "ab", "vid"):
        assert method in rows, method


def test_gpu_check_cpu_mode_writes_its_table(tmp_path: Path) -> None:
    table = tmp_path / "gpu_check.md"
    out = run("bench/gpu_check.py", "--cpu", "--out", str(table))
    text = table.read_text()
    assert "| path | ok | img/s | ours / ceiling |" in text
    assert "| model file: train_cell (1 epoch) | ok |" in text
    assert "FAILED" not in text, text  # a failed path is a row (and exit status 1)
    assert str(table) in out
    assert "| job forked by the preload server | ok |" in text


def test_throughput_bench_knows_the_size_of_every_fashion_dataset() -> None:
    """fashion_rd reads Fashion-MNIST's archives under another builder name (it crashed
    the bench): each dataset of the Fashion config maps to an official size."""
    sys.path.insert(0, str(ROOT / "bench"))
    from kdaug import plan
    from train_throughput import OFFICIAL, official_name, train_size

    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/fashion.yaml"])
    for name in ("fashion_mnist", "fashion_rd"):
        assert official_name(config["datasets"][name], name) == "fashion_mnist"
    size, shape = train_size(config, "fashion_rd")
    assert shape == OFFICIAL["fashion_mnist"][1] and 0 < size < OFFICIAL["fashion_mnist"][0]
