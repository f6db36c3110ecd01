"""kdaug.report.reference: publishing a run as a reference, and the README's claims table
(on hand-made files); and the committed Fashion-MNIST reference itself: every file parses
and every claim in it is one the claims files define."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdaug.report import reference

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs/reference/fashion-mnist"
CLAIMS_HEADER = "id,claim,expect,a_label,b_label,diff_mean,ci_low,ci_high,p,n,verdict\n"


def test_publish_copies_report_files_only_and_records_provenance(tmp_path: Path) -> None:
    run = tmp_path / "results/experiments"
    for name in ("last/table3.csv", "last/table3.md", "last/figure1.png", "notes.md",
                 "last/outputs.npz", "model.pt"):  # fmt: skip
        (run / "exp" / name).parent.mkdir(parents=True, exist_ok=True)
        (run / "exp" / name).write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text("run: [exp]\n")
    dest = tmp_path / "ref"
    (dest / "stale").mkdir(parents=True)  # replaced, not merged into
    reference.main(["publish", str(run), str(dest), "--configfile", str(config),
                    "--command", "make fashion", "--wall-s", "12.5"])  # fmt: skip
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == ["exp/last/figure1.png", "exp/last/table3.csv", "exp/last/table3.md",
                    "exp/notes.md", "provenance.json"]  # fmt: skip
    provenance = json.loads((dest / "provenance.json").read_text())
    assert provenance["command"] == "make fashion" and provenance["wall_s"] == 12.5
    assert provenance["experiments"] == ["exp"]
    assert len(provenance["config_files"][str(config)]) == 64
    assert "torch" in provenance["packages"]
    with pytest.raises(FileNotFoundError, match="no report folder for other"):
        reference.publish(run, dest, ["exp", "other"], configfiles=[], command="", wall_s=None)


def test_claims_table_and_readme_markers(tmp_path: Path) -> None:
    claims = tmp_path / "ref/exp/last/claims.csv"
    claims.parent.mkdir(parents=True)
    claims.write_text(CLAIMS_HEADER + 'c1,"A beats B",greater,A,B,0.012,0.002,0.022,0.03,3,holds\n'
                      "c2,Pipes | here,less,A,B,0.5,-1,2,0.4,3,not significant\n")  # fmt: skip
    md = reference.claims_markdown(reference.claims_frame(tmp_path / "ref"))
    row = "| exp | A beats B (`c1`) | A > B | 0.012 [0.002, 0.022], p = 0.03, n = 3 | **holds** |"
    assert row in md
    assert "Pipes \\| here" in md
    corr = tmp_path / "ref2/exp/last/claims.csv"
    corr.parent.mkdir(parents=True)
    corr.write_text(
        CLAIMS_HEADER.replace("\n", ",test\n")
        + "r1,T tracks L,positive,r(T),0,0.8,0.3,0.9,0.01,9,holds,correlation\n"
        + "r2,T beats V,positive,r(T),r(V),0.1,,,0.5,9,not significant,correlation\n"
    )
    md2 = reference.claims_markdown(reference.claims_frame(tmp_path / "ref2"))
    assert "| r(T) > 0 |" in md2 and "| r(T) > r(V) |" in md2
    assert md.rstrip().endswith("2 verdicts: 1 holds, 1 not significant.")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- fashion-claims -->\nstale text\n<!-- /fashion-claims -->\nend\n")
    reference.main(["readme", str(tmp_path / "ref"), str(readme)])
    text = readme.read_text()
    assert "stale text" not in text and "A beats B" in text and text.endswith("end\n")


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed reference yet")
def test_the_committed_reference_parses_and_names_known_claims() -> None:
    defined = set()
    for path in (ROOT / "src/kdaug/papers/claims").glob("*.yaml"):
        defined |= {entry["id"] for entry in yaml.safe_load(path.read_text())}
    frame = reference.claims_frame(COMMITTED)
    assert {i.split("[")[0] for i in frame["id"]} <= defined  # [teacher/student] suffixes
    assert frame["n"].max() >= 3  # seeds: verdicts are tests, not single runs
    for path in COMMITTED.rglob("*.csv"):
        assert not pd.read_csv(path).empty, path
    provenance = json.loads((COMMITTED / "provenance.json").read_text())
    assert provenance["git_commit"] and provenance["wall_s"] > 0
    readme = (ROOT / "README.md").read_text()
    body = reference.claims_markdown(frame)
    assert reference.replace_between_markers(readme, body) == readme  # README is current
