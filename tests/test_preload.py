"""kdaug.preload: job scripts run in processes forked from a server that imported torch
once, with the client's environment, folder, streams and exit status, and die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdaug import preload

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for a Snakemake job script: hands over first, then reports where it ran.
JOB = """
import os, sys
from kdaug.preload import hand_over, in_child
hand_over(setting="on")
print("ran in", os.getpid(), "child" if in_child() else "client", os.getcwd(),
      os.environ.get("MARK"), os.environ.get("OMP_NUM_THREADS"), sys.argv[1:])
import torch
print("torch threads", torch.get_num_threads())
import tempfile
print("tmp", tempfile.gettempdir())
print("to stderr", file=sys.stderr)
what = os.environ.get("WHAT", "")
if what == "fail":
    raise ValueError("the job's own error")
if what == "sleep":
    open(sys.argv[1], "w").write(str(os.getpid()))
    import time
    time.sleep(60)
if what == "exit_handlers":
    import atexit
    kept = tempfile.TemporaryDirectory(dir=sys.argv[1])  # its finalizer removes it at exit
    atexit.register(lambda: open(os.path.join(sys.argv[1], "atexit.txt"), "w").write("ran"))
sys.exit(int(os.environ.get("CODE", "0")))
"""


def run_job(script: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for(condition, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A job script and an environment whose first run starts a server (in a folder of
    its own), which is up when this yields."""
    folder = tmp_path_factory.mktemp("preload")
    env = {**os.environ, "KDAUG_PRELOAD_DIR": str(folder / "run"), "KDAUG_PRELOAD_IDLE": "300"}
    env.pop("KDAUG_PRELOAD", None)
    script = folder / "job.py"
    script.write_text(JOB)
    first = run_job(script, folder, env)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert f"ran in {first.pid} client" in out  # no server yet: ran itself
    wait_for(lambda: any((folder / "run").glob("*.sock")))
    yield script, env
    for lock in (folder / "run").glob("*.log"):
        pid = lock.read_text().split("pid ")[1].split()[0]
        os.kill(int(pid), signal.SIGTERM)


def test_a_job_runs_in_a_forked_child_with_the_clients_folder_environment_and_streams(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    script, env = served
    job_env = {**env, "MARK": "m1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = run_job(script, tmp_path, job_env, "arg")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    ran = out.splitlines()[0].split()
    assert ran[3] == "child" and int(ran[2]) != proc.pid
    assert ran[4:] == [str(tmp_path), "m1", "1", "['arg']"]
    assert "torch threads 1" in out  # OMP_NUM_THREADS applied as a fresh process reads it
    assert f"tmp {tmp_path}" in out  # Snakemake's tmpdir resource
    assert err == "to stderr\n"


def test_exit_status_and_errors_reach_the_client(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    script, env = served
    proc = run_job(script, tmp_path, {**env, "CODE": "3"})
    proc.communicate(timeout=60)
    assert proc.returncode == 3
    proc = run_job(script, tmp_path, {**env, "WHAT": "fail"})
    out, err = proc.communicate(timeout=60)
    assert "child" in out
    assert proc.returncode == 1
    assert "ValueError: the job's own error" in err and "Traceback" in err


def test_a_child_runs_the_exit_handlers_before_it_leaves(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    # the child skips Python's module teardown (preload._leave), not the exit handlers
    script, env = served
    proc = run_job(script, tmp_path, {**env, "WHAT": "exit_handlers"}, str(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "child" in out, err
    assert [p.name for p in tmp_path.iterdir()] == ["atexit.txt"]  # the temporary folder went
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_killing_the_client_kills_its_child(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    script, env = served
    pid_file = tmp_path / "child.pid"
    proc = run_job(script, tmp_path, {**env, "WHAT": "sleep"}, str(pid_file))
    wait_for(lambda: pid_file.exists() and pid_file.read_text())
    child = int(pid_file.read_text())
    assert child != proc.pid
    proc.kill()  # what Snakemake does to a cancelled job's process
    proc.wait()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 30)


def test_off_runs_the_job_in_its_own_process(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    script, env = served
    proc = run_job(script, tmp_path, {**env, "KDAUG_PRELOAD": "0"})
    out, _ = proc.communicate(timeout=120)
    assert f"ran in {proc.pid} client" in out


def test_settings(tmp_path: Path) -> None:
    no_gpu, gpu = tmp_path / "none", tmp_path / "gpus"
    (gpu / "0000:17:00.0").mkdir(parents=True)  # what the NVIDIA driver lists per GPU
    assert preload.enabled("auto", {}, no_gpu)
    assert not preload.enabled("auto", {"SLURM_JOB_ID": "7"}, no_gpu)  # jobs land anywhere
    assert not preload.enabled("auto", {}, gpu)  # not yet checked on a GPU
    assert preload.enabled("auto", {"CUDA_VISIBLE_DEVICES": ""}, gpu)  # none visible
    assert preload.enabled("on", {"SLURM_JOB_ID": "7"}, gpu)
    assert not preload.enabled("on", {"KDAUG_PRELOAD": "0"}, no_gpu)
    assert not preload.enabled("off", {}, no_gpu)


def test_the_server_key_changes_with_the_code_and_what_imports_read(tmp_path: Path) -> None:
    code = tmp_path / "pkg"
    code.mkdir()
    (code / "a.py").write_text("x = 1\n")
    key = preload.server_key({}, code)
    assert preload.server_key({}, code) == key
    assert preload.server_key({"PYTHONHASHSEED": "0"}, code) != key
    assert preload.server_key({"TORCHINDUCTOR_CACHE_DIR": "/x"}, code) != key
    # per-job settings applied in the child do not split the servers
    assert preload.server_key({"OMP_NUM_THREADS": "3", "HOME": "/y"}, code) == key
    (code / "a.py").write_text("x = 22\n")  # an edit: size (and mtime) change
    assert preload.server_key({}, code) != key


def test_a_server_whose_imports_fail_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preload, "PRELOAD", ("numpy", "no_such_module_here"))
    assert "No module named 'no_such_module_here'" in preload._preload()


def test_the_server_preloads_every_module_the_job_scripts_import() -> None:
    """A module a script imports that the server lacks would be imported by every job."""
    imported = set()
    for script in (ROOT / "workflow/scripts").glob("*.py"):
        for line in script.read_text().splitlines():
            if line.startswith("from kdaug"):
                imported.add(line.split()[1])
    code = (
        "import sys; from kdaug.preload import preloaded_modules\n"
        "for name in preloaded_modules(): __import__(name)\n"
        f"missing = [m for m in {sorted(imported)!r} if m not in sys.modules]\n"
        "print(missing)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert len(imported) > 10


@pytest.mark.workflow
def test_a_cell_trained_and_evaluated_by_preloaded_jobs_equals_one_run_without(
    served: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The same one-cell target (teacher, cached logits, student, evaluations) with and
    without the server: every array of every evaluation is identical."""
    from kdaug import plan
    from test_workflow import SNAKEMAKE, workdir

    _, env = served
    cell = plan.Cell("digits", 0, "resnet18", "cutmix", "hinton_t20", "lenet", "none")
    outputs = {}
    for how in ("0", "1"):
        (tmp_path / how).mkdir()
        wd = workdir(tmp_path / how)
        args = [cell.eval_metrics("best_val"), "--cores", "2", "--resources", "gpu=2",
                "--configfile", "config/demo.yaml", "config/fast.yaml"]  # fmt: skip
        proc = subprocess.run(
            [SNAKEMAKE, *args], cwd=wd, env={**env, "KDAUG_PRELOAD": how},
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        histories = [p.read_text() for p in (wd / "logs").rglob("*.history")]
        forked = ["forked by the preload server" in h for h in histories]
        assert len(histories) >= 4 and all(forked) == (how == "1") and any(forked) == all(forked)
        outputs[how] = {
            (str(path.relative_to(wd)), k): v
            for path in sorted((wd / "results/models").rglob("outputs.npz"))
            for k, v in np.load(path).items()
        }
    assert len(outputs["0"]) >= 8 and outputs["0"].keys() == outputs["1"].keys()
    for key, array in outputs["0"].items():
        assert np.array_equal(array, outputs["1"][key]), key
