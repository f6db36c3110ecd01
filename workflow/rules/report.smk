# Per experiment: collect every metrics file into one long CSV, then render each table and
# figure of the experiment's report (one job per file, so one can be redrawn alone), and
# the training curves of its models from their stored histories.


rule collect_metrics:
    input:
        lambda w: [
            e.metrics_file for e in plan.experiment_evaluations(config, w.experiment)
        ]
        + plan.experiment_teacher_stats(config, w.experiment)
        + plan.experiment_attacks(config, w.experiment),
    output:
        plan.METRICS_CSV,
    log:
        "logs/experiments/{experiment}/collect.log",
    conda:
        CONDA_ENV
    params:
        splits=lambda w: plan.experiment_splits(config["experiments"][w.experiment]),
        code=script_code("collect_metrics"),
    script:
        "../scripts/collect_metrics.py"


rule render_table:
    input:
        plan.METRICS_CSV,
    output:
        csv=report(
            plan.TABLE_CSV,
            caption="../report/item.rst",
            category=lambda w: render.report_category(config, w.experiment),
            subcategory="{experiment}",
            labels={"file": "{table}", "weights": "{selection}"},
        ),
        md=plan.TABLE_MD,
        tex=render.TABLE_TEX,
    log:
        "logs/experiments/{experiment}/{selection}/{table}.log",
    conda:
        CONDA_ENV
    params:
        caption=lambda w: render.report_caption(
            config, w.experiment, w.selection, w.table
        ),
        experiment=lambda w: plan.experiment_view(config, w.experiment),
        code=script_code("render_table"),
    script:
        "../scripts/render_table.py"


rule render_figure:
    input:
        unpack(
            lambda w: render.figure_inputs(config, w.experiment, w.selection, w.figure)
        ),
    output:
        report(
            plan.FIGURE,
            caption="../report/item.rst",
            category=lambda w: render.report_category(config, w.experiment),
            subcategory="{experiment}",
            labels={"file": "{figure}", "weights": "{selection}"},
        ),
    log:
        "logs/experiments/{experiment}/{selection}/{figure}.log",
    conda:
        CONDA_ENV
    params:
        caption=lambda w: render.report_caption(
            config, w.experiment, w.selection, w.figure
        ),
        experiment=lambda w: plan.experiment_view(config, w.experiment),
        code=script_code("render_figure"),
    script:
        "../scripts/render_figure.py"


rule render_claims:
    input:
        plan.METRICS_CSV,
    output:
        csv=report(
            plan.CLAIMS_CSV,
            caption="../report/item.rst",
            category=lambda w: render.report_category(config, w.experiment),
            subcategory="{experiment}",
            labels={"file": "claims", "weights": "{selection}"},
        ),
        md=plan.CLAIMS_MD,
    log:
        "logs/experiments/{experiment}/{selection}/claims.log",
    conda:
        CONDA_ENV
    params:
        caption=lambda w: render.report_caption(
            config, w.experiment, w.selection, "claims"
        ),
        experiment=lambda w: plan.experiment_view(config, w.experiment),
        code=script_code("render_claims"),
    script:
        "../scripts/render_claims.py"


rule render_training_curves:
    input:
        lambda w: render.training_curve_inputs(config, w.experiment),
    output:
        figure=report(
            render.TRAINING_CURVES_FIGURE,
            caption="../report/item.rst",
            category=lambda w: render.report_category(config, w.experiment),
            subcategory="{experiment}",
            labels={"file": "figure_training_curves", "weights": "every epoch"},
        ),
        csv=render.TRAINING_CURVES_CSV,
    log:
        "logs/experiments/{experiment}/training_curves.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        caption=lambda w: render.training_curves_caption(config, w.experiment),
        cells=lambda w: render.training_curve_cells(config, w.experiment),
        code=script_code("render_training_curves"),
    script:
        "../scripts/render_training_curves.py"


# Only for an experiment that sets a split role to null (plan.absent_roles): which of its
# report's tables and figures are left out for lack of that split.
rule render_notes:
    output:
        render.NOTES,
    log:
        "logs/experiments/{experiment}/notes.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        notes=lambda w: render.report_notes(config, w.experiment),
    script:
        "../scripts/render_notes.py"
