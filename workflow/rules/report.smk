# Per experiment: collect every metrics file into one long CSV, then render tables/figures.


rule collect_metrics:
    input:
        lambda w: [
            e.metrics_file for e in plan.experiment_evaluations(config, w.experiment)
        ],
    output:
        plan.EXPERIMENT + "/metrics.csv",
    log:
        "logs/experiments/{experiment}/collect.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/collect_metrics.py"


rule render_report:
    input:
        plan.EXPERIMENT + "/metrics.csv",
    output:
        [plan.EXPERIMENT + "/" + f for f in render.report_files(config)],
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
