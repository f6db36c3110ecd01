# Per experiment: collect every metrics file into one long CSV, then render tables/figures.


rule collect_metrics:
    input:
        lambda w: [
            e.metrics_file for e in plan.experiment_evaluations(config, w.experiment)
        ],
    output:
        plan.METRICS_CSV,
    log:
        "logs/experiments/{experiment}/collect.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/collect_metrics.py"


rule render_report:
    input:
        plan.METRICS_CSV,
    output:
        plan.experiment_outputs(config),
    log:
        "logs/experiments/{experiment}/render.log",
    conda:
        CONDA_ENV
    params:
        experiment=lambda w: config["experiments"][w.experiment],
        selections=config["evaluation"]["selections"],
        code=source_hash(["render", "io"]),
    script:
        "../scripts/render_report.py"
