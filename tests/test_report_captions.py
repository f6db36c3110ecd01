"""Report captions: the paper's claim, and what we found read from the rendered files."""

from __future__ import annotations

from pathlib import Path

import yaml

from kdaug import render
from kdaug.render import ReportCaption


def test_found_counts_verdicts_and_differences_from_the_paper(tmp_path):
    claims = tmp_path / "claims.csv"
    claims.write_text("id,verdict\na,holds\nb,holds\nc,reversed\n")
    table = tmp_path / "t.csv"
    table.write_text("row,x_mean,x_paper,x_diff,y_diff\nr1,0.5,0.6,-0.1,nan\nr2,0.7,0.4,0.3,\n")
    caption = ReportCaption("claim", "shows", str(table), str(claims))
    assert caption.found() == (
        "claim verdicts on our data: 2 holds, 1 reversed; "
        "ours minus the paper over 2 cells: mean |Δ| = 0.2"
    )
    no_paper = tmp_path / "n.csv"
    no_paper.write_text("row,x_mean,x_paper,x_diff\nr1,0.5,,\n")
    assert "no published value" in ReportCaption("c", "s", str(no_paper)).found()
    assert ReportCaption("c", "s").found() == "see the values shown"
    # the repr holds only fixed fields: as a rule param it never changes after a run
    assert "holds" not in repr(caption)


def test_every_configured_experiment_has_a_category_and_a_claim():
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    for experiment, exp in config["experiments"].items():
        titles = [render.PAPERS.get(p).title for p in render.PAPERS.names()]
        assert render.report_category(config, experiment) in titles
        assert render.REPORTS.get(exp["report"]).claim, exp["report"]
        report = render.REPORTS.get(exp["report"])
        for name in report.tables:
            caption = render.report_caption(config, experiment, "last", name)
            assert caption.table_csv.endswith(f"{experiment}/last/{name}.csv")
