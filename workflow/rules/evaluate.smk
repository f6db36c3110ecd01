# Evaluation: one job per (model, weight selection) writes the model's logits (+
# embeddings) on every split it is evaluated on, and their metrics (a job per split cost
# more in start-up than the evaluation itself).
EVAL_SPLITS = plan.evaluation_splits(config)


rule evaluate_model:
    input:
        model=plan.ANY_MODEL,
        splits=lambda w: [
            plan.DATA.format(dataset=w.dataset, split=s)
            for s in plan.model_splits(EVAL_SPLITS, w.dataset, w.seed, w.model)
        ],
    output:
        outputs=plan.EVAL_OUTPUTS,
        metrics=plan.EVAL_METRICS,
    log:
        "logs/models/{dataset}/seed{seed}/{model}/eval/{selection}.log",
    conda:
        CONDA_ENV
    threads: config["runtime"]["threads"]
    resources:
        **GPU_EVAL_JOB,
    params:
        splits=lambda w: plan.model_splits(EVAL_SPLITS, w.dataset, w.seed, w.model),
        embeddings_for=config["evaluation"]["embeddings_for"],
        cell=lambda w: plan.cell_from_wildcards(w.dataset, w.seed, w.model).identity(),
        metrics=config["evaluation"]["metrics"],
        ece_bins=config["evaluation"]["ece_bins"],
        vscore_groups=config["evaluation"]["vscore_groups"],
        code=script_code("evaluate_model"),
    script:
        "../scripts/evaluate_model.py"


# Wang et al. (2022): the teacher's statistics on a student cell's training stream
# (T. stddev, v-bar, r-bar). Reads the trained student only for student-entropy picking.
rule teacher_stats:
    input:
        unpack(
            lambda w: plan.teacher_stats_inputs(
                config, w.dataset, w.seed, w.tarch, w.taug, w.kd, w.sarch, w.saug
            )
        ),
    output:
        plan.TEACHER_STATS,
    log:
        "logs/models/{dataset}/seed{seed}/{tarch}-{taug}/{kd}/{sarch}-{saug}/teacher_stats.log",
    conda:
        CONDA_ENV
    threads: config["runtime"]["threads"]
    resources:
        **GPU_EVAL_JOB,
    params:
        spec=lambda w: plan.student_spec(
            config, w.dataset, w.seed, w.tarch, w.taug, w.kd, w.sarch, w.saug
        ),
        cell=lambda w: plan.Cell(
            w.dataset, int(w.seed), w.tarch, w.taug, w.kd, w.sarch, w.saug
        ).identity(),
        settings=config["evaluation"]["teacher_stats"],
        code=script_code("teacher_stats"),
    script:
        "../scripts/teacher_stats.py"


# Choi et al. (2023): accuracy under FGSM and I-FGSM; loads the model (gradients needed).
rule attack_model:
    input:
        model=plan.ANY_MODEL,
        split=plan.DATA,
    output:
        plan.ATTACKS,
    log:
        "logs/models/{dataset}/seed{seed}/{model}/eval/{selection}/{split}.attacks.log",
    conda:
        CONDA_ENV
    threads: config["runtime"]["threads"]
    resources:
        **GPU_EVAL_JOB,
    params:
        cell=lambda w: plan.cell_from_wildcards(w.dataset, w.seed, w.model).identity(),
        settings=config["evaluation"]["attacks"],
        code=script_code("attack_model"),
    script:
        "../scripts/attack_model.py"
