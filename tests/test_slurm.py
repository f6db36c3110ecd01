"""The SLURM profile end to end: demo experiments submitted through the real
snakemake-executor-plugin-slurm to a real single-node SLURM cluster
(``../shared/tools/local-slurm.sh`` stands one up; CI runs it before the tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from kdaug import plan
from test_workflow import ROOT, SNAKEMAKE, check_report_file, load_config, workdir

pytestmark = pytest.mark.workflow

# Two demo experiments that use every cluster rule but teacher_stats' own: prepare_split,
# train_teacher, distill_student (cached teacher logits and online teacher), evaluate_split,
# attack_model; the quick rules run locally (localrules). The whole demo through SLURM
# takes ~30 min on 2 CPUs, too long for CI beside the local demo run.
EXPERIMENTS = ["das2020_digits_mnist", "choi2023_digits_robustness"]


@pytest.fixture(scope="module")
def cluster() -> None:
    if shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must run this test: no SLURM cluster (run ../shared/tools/local-slurm.sh)"
            )
        pytest.skip("no SLURM cluster here (../shared/tools/local-slurm.sh stands one up)")


def test_demo_experiments_run_through_slurm(cluster, tmp_path) -> None:
    wd = workdir(tmp_path)
    shutil.copy(ROOT / "tests/configs/slurm_ci.yaml", wd / "config/slurm_ci.yaml")
    run = f"run=[{','.join(EXPERIMENTS)}]"
    # `timeout -k`: a plugin stuck polling ignores a plain SIGTERM (local-slurm.sh header)
    proc = subprocess.run(
        ["timeout", "-k", "30", "1500", SNAKEMAKE, "--workflow-profile", "profiles/slurm",
         "--configfile", "config/demo.yaml", "config/fast.yaml", "config/slurm_ci.yaml",
         "--config", run, "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "5"],
        cwd=wd, capture_output=True, text=True,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    # every training/evaluation job went through sbatch and got a SLURM job id
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    rules = re.findall(r"slurm_logs/rule_(\w+?)/", out)
    assert len(submitted) >= 6 + 4 + 6 + 13, out[-3000:]
    assert {"prepare_split", "train_teacher", "distill_student", "evaluate_split",
            "attack_model"} <= set(rules)  # fmt: skip
    assert "sbatch call: sbatch" in out or submitted
    config = load_config("config/config.yaml", "config/demo.yaml", "tests/configs/fast.yaml")
    for experiment in EXPERIMENTS:
        base = wd / "results/experiments" / experiment
        for name in plan.experiment_report_files(config, experiment):
            check_report_file(base / name)
