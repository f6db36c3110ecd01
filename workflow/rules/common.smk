# Helpers the rules share.
from kdaug.codehash import code_hash


def script_code(script):
    """A rule param that changes with the kdaug code the rule's script imports."""
    return code_hash(f"{workflow.basedir}/workflow/scripts/{script}.py")


# What each job asks of a cluster, per family of rules (config `job_resources`); the SLURM
# plugin turns mem_mb, runtime (minutes) and gpu into sbatch's --mem, --time, --gpus and
# threads into --cpus-per-task. Run locally, only gpu (against --resources gpu=N) and
# threads (against --cores) count.
TRAIN_JOB = config["job_resources"]["train"]
GPU_EVAL_JOB = config["job_resources"]["gpu_eval"]
CPU_JOB = config["job_resources"]["cpu"]
