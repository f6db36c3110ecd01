"""The report checker (kdaug.verify) on small hand-made files."""

from __future__ import annotations

from pathlib import Path

from kdaug import verify


def test_each_kind_of_broken_file_is_named(tmp_path: Path) -> None:
    def write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    assert verify.file_problem(tmp_path / "absent.csv") == "missing"
    assert verify.file_problem(write("empty.md", "")) == "empty"
    assert "verdicts" in verify.file_problem(write("claims.csv", "id,verdict\na,maybe\n"))
    assert verify.file_problem(write("claims.csv", "id,verdict\na,holds\n")) is None
    assert verify.file_problem(write("table1.csv", "row,x_mean\nr,nan\n")) == "a NaN cell"
    assert verify.file_problem(write("table1.csv", "row,x\nr,1\n")) == "no table cells"
    assert verify.file_problem(write("table1.csv", "row,x_mean\nr,0.5\n")) is None
    assert verify.file_problem(write("f.png", b"GIF89a..")) == "not a PNG"
    assert verify.file_problem(write("f.png", verify.PNG_MAGIC + b"...")) is None
    assert verify.file_problem(write("t.md", "| a |\n|---|\n")) == "no Markdown table rows"
    assert verify.file_problem(write("t.md", "cap\n| a |\n|---|\n| 1 |\n")) is None
    assert verify.file_problem(write("t.tex", "\\begin{tabular}")) == "not a booktabs tabular"


def test_the_command_line_reports_a_run_with_nothing_rendered(tmp_path: Path, capsys) -> None:
    root = Path(__file__).resolve().parents[1]
    rc = verify.main(["--configfile", str(root / "config/demo.yaml"), "--root", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 1 and "missing" in out.err and "0 of" in out.out
