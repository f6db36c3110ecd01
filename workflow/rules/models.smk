# Training: one teacher per (dataset, arch, augmentation, seed); one student per
# (teacher, KD method, student arch, student augmentation). The cell's full spec is a
# param, and so is a hash of the library code that trains it: changing either reruns it.

TRAIN_CODE = script_code("train")
# How steps run on the device (precision, layout, compile): a param, so changing it
# reruns training (it changes the rounding); GPU slots and threads do not.
SPEED = plan.speed_settings(config)


rule train_teacher:
    input:
        unpack(
            lambda w: plan.teacher_inputs(config, w.dataset, w.seed, w.tarch, w.taug)
        ),
    output:
        plan.TEACHER_MODEL,
    log:
        "logs/models/{dataset}/seed{seed}/{tarch}-{taug}/train.log",
    conda:
        CONDA_ENV
    threads: config["runtime"]["threads"]
    resources:
        **TRAIN_JOB,
    params:
        spec=lambda w: plan.teacher_spec(config, w.dataset, w.seed, w.tarch, w.taug),
        code=TRAIN_CODE,
        speed=SPEED,
    script:
        "../scripts/train.py"


rule distill_student:
    input:
        unpack(
            lambda w: plan.student_inputs(
                config, w.dataset, w.seed, w.tarch, w.taug, w.kd, w.saug
            )
        ),
    output:
        plan.STUDENT_MODEL,
    log:
        "logs/models/{dataset}/seed{seed}/{tarch}-{taug}/{kd}/{sarch}-{saug}/train.log",
    conda:
        CONDA_ENV
    threads: config["runtime"]["threads"]
    resources:
        **TRAIN_JOB,
    params:
        spec=lambda w: plan.student_spec(
            config, w.dataset, w.seed, w.tarch, w.taug, w.kd, w.sarch, w.saug
        ),
        code=TRAIN_CODE,
        speed=SPEED,
    script:
        "../scripts/train.py"
