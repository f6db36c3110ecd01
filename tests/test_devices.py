"""GPU slots: concurrent jobs get distinct devices (fake device counts, real processes)."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

import pytest

from kdaug.devices import claim_gpu, visible_gpus


def _job(lock_dir, num_gpus, slots, env, results, release):
    env = dict(env)
    gpu = claim_gpu(slots, lock_dir=lock_dir, num_gpus=num_gpus, env=env, poll_seconds=0.05)
    results.put((gpu, env.get("CUDA_VISIBLE_DEVICES")))
    release.wait(30)  # hold the slot, as a running job does


def _run_jobs(tmp_path, n_jobs, num_gpus, slots, env=None, collect=None):
    ctx = mp.get_context("fork")
    results, release = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_job, args=(tmp_path, num_gpus, slots, env or {}, results, release))
        for _ in range(n_jobs)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=30) for _ in range(collect or n_jobs)]
    release.set()
    for p in procs:
        p.join(30)
    return got


def test_concurrent_jobs_get_distinct_gpus(tmp_path):
    got = _run_jobs(tmp_path, 3, num_gpus=3, slots=1)
    assert sorted(g for g, _ in got) == ["0", "1", "2"]
    assert all(gpu == visible for gpu, visible in got)  # each job sees only its GPU


def test_slots_fill_every_gpu_before_sharing_one(tmp_path):
    got = _run_jobs(tmp_path, 4, num_gpus=2, slots=2)
    assert Counter(g for g, _ in got) == {"0": 2, "1": 2}


def test_a_job_waits_while_every_slot_is_taken(tmp_path):
    # three jobs, two single-slot GPUs: the third gets a GPU only after another ends
    got = _run_jobs(tmp_path, 3, num_gpus=2, slots=1, collect=2)
    assert sorted(g for g, _ in got) == ["0", "1"]


def test_visible_devices_are_the_ones_chosen_from(tmp_path):
    got = _run_jobs(tmp_path, 2, num_gpus=None, slots=1, env={"CUDA_VISIBLE_DEVICES": "5,7"})
    assert sorted(g for g, _ in got) == ["5", "7"]


def test_slurm_allocation_is_used_as_is(tmp_path):
    env = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3,4"}
    assert claim_gpu(1, lock_dir=tmp_path, num_gpus=8, env=env) == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == "3,4"  # a multi-GPU allocation is not narrowed
    assert list(tmp_path.iterdir()) == []  # no slot taken


def test_one_gpu_or_none_needs_no_choice(tmp_path):
    env: dict[str, str] = {}
    assert claim_gpu(1, lock_dir=tmp_path, num_gpus=0, env=env) is None
    assert claim_gpu(1, lock_dir=tmp_path, num_gpus=1, env=env) == "0"
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    with pytest.raises(ValueError, match="slots per GPU must be >= 1"):
        claim_gpu(0, lock_dir=tmp_path, num_gpus=2, env={})
