"""Run workflow jobs in processes forked from one that has already imported torch.

Every Snakemake job is a fresh Python process, and ``import torch`` alone takes about
1.5 s of the ~2 s a job spends before its work starts (``python -X importtime``). A demo
has ~150 such jobs, the paper config ~5,000; their start-up was a third of the demo's
job-seconds. So a job script first calls :func:`hand_over`:

- if a *preload server* for this exact code is up, the script's process (the *client*)
  sends it its script file, working directory, environment, ``sys.path``, umask, CPU
  affinity and its stdin/stdout/stderr file descriptors (``SCM_RIGHTS``); the server
  forks a *child* that adopts all of these and runs the script file as ``__main__``,
  exactly as Python would, then reports the exit status, which the client exits with;
- otherwise the client starts a server in the background (for the jobs after it) and
  returns, and the script runs in its own process as before.

What a job computes does not depend on which way it ran: the child is the server's
process image right after its imports, before any tensor work (no CUDA context, no
OpenMP pool used), with the client's environment; the thread counts Snakemake passes in
``OMP_NUM_THREADS`` are applied as a fresh process would read them; Python's and NumPy's
global random states are reseeded from the OS as at a fresh start (the pipeline seeds
its own generators; torch's default generator is untouched by the server, so it holds
torch's fixed initial seed as in a fresh process). ``tests/test_preload.py`` checks that a
training job gives byte-identical model files both ways.

Safety: the server is keyed by the interpreter, the installed packages (site-packages'
mtime), the environment variables libraries read on import (``PYTHON*``, ``TORCH*``,
``CUDA*``, ``MKL*``...) and the size and mtime of every file of the ``kdaug`` package,
so edited code never runs in a server that imported the old one; it
holds a lock for its lifetime (one server per key), listens on a user-only socket and
exits after ``KDAUG_PRELOAD_IDLE`` seconds (default 120) without a job. A client that is
killed (Snakemake cancelling the job) closes its socket, and its child kills itself. A
child that dies without a status fails the job (exit 1). A child leaves without Python's
module teardown (its exit handlers do run, see ``_leave``): with torch and the plotting
stack loaded, that teardown cost more than half a second per job.

Off with ``runtime.preload: "off"`` or ``KDAUG_PRELOAD=0``; ``auto`` (the default) is off
inside SLURM jobs, where each job may land on another node and a server would be killed
with the job that started it, and on machines with an NVIDIA GPU until a GPU run has
checked CUDA in a forked child (``make gpu-check`` does; ``"on"`` forces it). A server
whose imports fail (or start CUDA) serves nothing: it logs why and holds its lock while
idle, so the jobs run in their own processes instead of each starting another.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import random
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

# What a job script may import: the server imports all of it once (a test checks that
# every module the scripts import is among these or below them).
PRELOAD = (
    "numpy",
    "torch",
    "torch._dynamo",  # torch.optim imports it on an optimizer's construction: 2 s a job
    "torch.utils.serialization",  # torch.save / torch.load
    "pandas",
    "scipy.stats",
    "sklearn.cluster",
    "sklearn.manifold",
    "sklearn.metrics",
    "matplotlib",
    "matplotlib.backends.backend_agg",
    "PIL.Image",
    "seaborn",
    "snakemake.script",
    "snakemake.logging",
)
# ... and the package's job-side modules, named without the "kdaug." prefix so that
# kdaug.codehash does not count them as imports of this module: a job's code is what its
# script imports, not what the server happens to hold.
PRELOAD_KDAUG = (
    "data.canonical",
    "data.datasets",
    "data.download",
    "io",
    "joblog",
    "devices",
    "train.training",
    "measure.evaluation",
    "measure.extract",
    "measure.robustness",
    "measure.teacher_stats",
    "measure.vscore",
    "plan",
    "render",
    "papers",
    "report.curves",
    "report.plots",
)
DEFAULT_IDLE_SECONDS = 120.0


def preloaded_modules() -> list[str]:
    """Every module a server imports before it serves."""
    return [*PRELOAD, *(f"kdaug.{name}" for name in PRELOAD_KDAUG)]


_HEADER = struct.Struct("!I")
_in_child = False  # set in a forked child: its script's own hand_over call returns
_client_started_at: float | None = None  # in a child: when its client process started


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def enabled(
    setting: str = "auto", env: Mapping[str, str] | None = None, gpus: Path = NVIDIA_GPUS
) -> bool:
    """Whether a job hands over: ``runtime.preload`` (auto/on/off), ``KDAUG_PRELOAD=0``
    turning it off. ``auto`` is on except inside a SLURM job and on a machine with a
    visible NVIDIA GPU: a CUDA context does not survive a fork, and although the server
    never starts one, that has not yet been checked on a GPU (``make gpu-check`` runs a
    CUDA job through a server with ``on``)."""
    env = os.environ if env is None else env
    if env.get("KDAUG_PRELOAD", "") == "0" or setting == "off":
        return False
    if setting == "on":
        return True
    visible = env.get("CUDA_VISIBLE_DEVICES")
    has_gpu = visible not in ("", "-1") and gpus.is_dir() and any(gpus.iterdir())
    return "SLURM_JOB_ID" not in env and not has_gpu


# Variables that libraries read when they are imported: a server imported them under
# the values of its key. (Thread counts are applied per job instead, see _adopt.)
ENV_PREFIXES = ("PYTHON", "TORCH", "PYTORCH", "CUDA", "CUBLAS", "CUDNN", "NVIDIA", "MKL",
                "KMP", "OMP", "OPENBLAS", "GOMP", "MPL", "LD_", "KDAUG_")  # fmt: skip
# what Snakemake sets to a job's thread count (snakemake/shell.py)
THREAD_VARIABLES = (
    *("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS"),
    *("VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"),
)
ENV_PER_JOB = (*THREAD_VARIABLES, "KDAUG_PRELOAD", "KDAUG_PRELOAD_IDLE", "KDAUG_PRELOAD_DIR")


def import_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that a server's imports may have read."""
    return {
        k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) and k not in ENV_PER_JOB
    }


KDAUG_DIR = Path(__file__).resolve().parent


def server_key(env: Mapping[str, str] | None = None, code_dir: Path = KDAUG_DIR) -> str:
    """Digest of everything a server's imports depend on (see the module docstring)."""
    env = os.environ if env is None else env
    site = Path(sysconfig.get_paths()["purelib"])
    code = sorted(
        (str(p.relative_to(code_dir)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in code_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    facts = {
        "executable": sys.executable,
        "version": sys.version,
        "site": [str(site), site.stat().st_mtime_ns if site.exists() else None],
        "environment": import_environment(env),
        "kdaug": [str(code_dir), code],
    }
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:20]


def in_child() -> bool:
    """Whether this process is a job forked by a preload server."""
    return _in_child


def runtime_dir() -> Path:
    """The user's socket folder (mode 0700): ``KDAUG_PRELOAD_DIR``, else one per user in
    the temporary folder."""
    default = Path(tempfile.gettempdir()) / f"kdaug-preload-{os.getuid()}"
    folder = Path(os.environ.get("KDAUG_PRELOAD_DIR") or default)
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user")
    return folder


def _paths(key: str) -> tuple[Path, Path, Path]:
    folder = runtime_dir()
    return folder / f"{key}.sock", folder / f"{key}.lock", folder / f"{key}.log"


def _lock_is_held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def start_server(key: str, env: Mapping[str, str] | None = None) -> subprocess.Popen | None:
    """Start this key's server in the background unless one is up or starting."""
    sock, lock, log = _paths(key)
    if _lock_is_held(lock):
        return None
    env = dict(os.environ if env is None else env)
    for name in THREAD_VARIABLES:  # the server's libraries start with their defaults
        env.pop(name, None)
    code = f"from kdaug.preload import serve; serve({str(sock)!r}, {str(lock)!r})"
    with open(log, "ab") as out:
        # its own session and no inherited pipes: Snakemake waits for neither
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
            start_new_session=True,
            env=env,
            cwd="/",
        )


def process_age() -> float | None:
    """Seconds since this job's process started (Linux ``/proc``), or None elsewhere. In
    a forked child: since its client started, where the job's start-up began."""
    if _client_started_at is not None:
        return time.time() - _client_started_at
    try:
        with open("/proc/self/stat") as fh:
            # field 22 (starttime, clock ticks after boot); the command name (field 2) may
            # hold spaces, so count from the closing parenthesis
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _process_started_at() -> float:
    return time.time() - (process_age() or 0.0)


def hand_over(snakemake: Any = None, setting: str | None = None) -> None:
    """Run the calling job script in a preloaded child and exit with its status, or return
    to let the script run here (inside a child, when preloading is off, or when no server
    is up yet: one is started for the next jobs)."""
    if _in_child:
        return
    if setting is None:
        runtime = getattr(snakemake, "config", {}).get("runtime", {}) if snakemake else {}
        setting = runtime.get("preload", "auto")
    if not enabled(setting):
        return
    main = sys.modules["__main__"]
    script = getattr(main, "__real_file__", None) or sys.argv[0]
    try:
        key = server_key()
        sock_path = _paths(key)[0]
    except OSError:  # no usable folder for a server: run here
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock_path))
    except OSError:  # no server up: start one for the next jobs and run here
        conn.close()
        with contextlib.suppress(OSError):
            start_server(key)
        return
    code = _run_remotely(conn, os.path.abspath(script))
    if code is None:  # the server went away before the child started: run here
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _request(script: str) -> dict[str, Any]:
    return {
        "script": script,
        "argv": [script, *sys.argv[1:]],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": list(sys.path),
        "umask": _current_umask(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "started_at": _process_started_at(),
    }


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _run_remotely(conn: socket.socket, script: str) -> int | None:
    """Send the request and wait for the child; None when no child started."""
    with conn:
        payload = json.dumps(_request(script)).encode()
        try:
            socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
            conn.sendall(payload)
            reader = conn.makefile("rb")
            started = reader.readline()
        except OSError:
            return None
        if not started.startswith(b"started "):
            return None
        status = reader.readline()
        reader.read()  # EOF: the child has exited (its files are closed)
    if not status.startswith(b"exit "):
        pid = started.split()[1].decode()
        print(f"kdaug.preload: job process {pid} ended without a status", file=sys.stderr)
        return 1
    return int(status.split()[1])


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(n)
        if not chunk:
            raise ConnectionError("client closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def serve(sock_path: str, lock_path: str, idle: float | None = None) -> None:
    """The server: preload, then fork a child per connection until idle."""
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another server holds this key
    if idle is None:
        idle = float(os.environ.get("KDAUG_PRELOAD_IDLE", DEFAULT_IDLE_SECONDS))
    t0 = time.perf_counter()
    problem = _preload()
    if problem:
        # hold the lock while idle: the jobs run in their own processes meanwhile, rather
        # than each starting another server that fails the same way
        print(f"{time.ctime()}: pid {os.getpid()} not serving: {problem}", flush=True)
        time.sleep(idle)
        return
    print(f"{time.ctime()}: pid {os.getpid()} preloaded in {time.perf_counter() - t0:.1f} s",
          flush=True)  # fmt: skip
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{sock_path}.{os.getpid()}"
    listener.bind(staging)
    os.chmod(staging, 0o600)
    listener.listen(64)
    os.replace(staging, sock_path)  # appears only once it accepts
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    served, child_conn = 0, None
    try:
        while select.select([listener], [], [], idle)[0]:
            conn, _ = listener.accept()
            served += 1
            if os.fork() == 0:
                child_conn = conn
                break
            conn.close()
    finally:
        if child_conn is None:  # the server's own exit (a child leaves the socket alone)
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock_path)
    if child_conn is not None:
        listener.close()
        os.close(lock_fd)  # the lock stays with the server
        _leave(_child(child_conn))
    print(f"{time.ctime()}: idle for {idle:.0f} s after {served} jobs; exiting", flush=True)
    for path in (lock_path, f"{sock_path.removesuffix('.sock')}.log"):  # only a failure's stay
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _preload() -> str | None:
    """Import everything; a reason not to serve, or None."""
    try:
        for name in preloaded_modules():
            __import__(name)
    except Exception:
        return "a preloaded import failed:\n" + traceback.format_exc()
    import torch

    if torch.cuda.is_initialized():  # a CUDA context cannot be used after a fork
        return "an import initialised CUDA"
    import gc

    gc.freeze()  # children do not copy the preloaded objects' pages when they collect
    return None


def _adopt(request: Mapping[str, Any]) -> None:
    """Become the client's process: environment, folder, paths, limits, fresh RNGs."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = request["path"]
    sys.argv[:] = request["argv"]
    os.umask(request["umask"])
    tempfile.tempdir = None  # found again from the job's TMPDIR (Snakemake's tmpdir)
    with contextlib.suppress(OSError):  # a CPU set the server may not use
        os.sched_setaffinity(0, request["affinity"])
    random.seed()
    import numpy as np

    np.random.seed()  # the legacy global state a fresh process seeds from the OS
    threads = request["env"].get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(int(threads))
        threadpool_limits(int(threads))
    global _client_started_at
    _client_started_at = request["started_at"]


def _watch_client(conn: socket.socket) -> None:
    """Kill this child when its client goes away (the job was cancelled)."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _child(conn: socket.socket) -> int:
    global _in_child
    _in_child = True
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        data, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv_exactly(conn, _HEADER.unpack(data)[0]))
    except (OSError, ValueError, struct.error):
        return 1
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    _adopt(request)
    conn.sendall(f"started {os.getpid()}\n".encode())
    threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
    code = _run_script(request["script"])
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(f"exit {code}\n".encode())
    return code  # the socket closes as the process exits (_leave)


def _leave(code: int) -> NoReturn:
    """End a job's child quickly: the exit handlers run (logging's final flush, weakref
    finalizers such as temporary folders, multiprocessing's clean-up), Python's teardown of
    the preloaded modules and its final collection do not. That teardown took ~0.55 s per
    job with torch, pandas and matplotlib loaded: most of a small job's start-up cost, as
    Snakemake waits for the job's process to end. Files the script left open are closed by
    the kernel without a flush; the job scripts close what they write (``with``, or
    numpy/torch writers that do)."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _run_script(script: str) -> int:
    """Run ``script`` as ``__main__``; its exit status as ``python script`` would give."""
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0
