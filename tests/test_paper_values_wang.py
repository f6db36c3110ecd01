"""Structural checks of the Wang et al. 2022 paper-values record (papers/values/wang2022.yaml)."""

import operator
import re
from importlib import resources
from pathlib import Path

import pytest

from paper_values_fixtures import paper_fixtures

ROOT = Path(__file__).resolve().parents[1]
PAPER_TXT = ROOT.parent / "shared" / "papers" / "wang2022.txt"

DA_ROWS = [
    "identity", "flip", "flip_crop", "cutout", "autoaugment", "mixup", "cutmix",
    "cutmixpick_s", "cutmixpick_t",
]  # fmt: skip
ACC_ROWS = [
    "teacher_accuracy", "student_accuracy", "kd", "kd_cutmix", "kd_cutmixpick", "kd_prolonged",
    "kd_cutmixpick_prolonged", "crd", "crd_cutmixpick", "crd_cutmixpick_prolonged",
]  # fmt: skip
KD_BLOCK, CRD_BLOCK = ACC_ROWS[2:7], ACC_ROWS[7:]
PAIRS = [
    "wrn_40_2__wrn_16_2", "resnet56__resnet20", "resnet32x4__resnet8x4", "vgg13__vgg8",
    "vgg13__MobileNetV2", "ResNet50__vgg8", "resnet32x4__ShuffleV2",
]  # fmt: skip
ARCHS = {
    "wrn_40_2", "wrn_16_2", "resnet56", "resnet20", "resnet32x4", "resnet8x4", "vgg13", "vgg8",
    "MobileNetV2", "ResNet50", "ShuffleV2", "resnet34", "resnet18",
}  # fmt: skip
TABLE_KEYS = {
    1: "table1_cifar100_accuracy",
    2: "table2_tinyimagenet_accuracy",
    3: "table3_cifar100_tstddev_loss",
    4: "table4_cifar100_tstddev_loss_cont",
    5: "table5_tinyimagenet_tstddev_loss",
    6: "table6_tinyimagenet_tstddev_loss_cont",
    7: "table7_imagenet100_tstddev_loss",
    8: "table8_imagenet_tstddev_loss",
    9: "table9_cifar100_vbar_loss",
    10: "table10_cifar100_rbar_loss",
}
TSTDDEV_TABLES = [3, 4, 5, 6, 7, 8]
ARROW_TABLES = [9, 10]
OPS = {"/": operator.truediv, "*": operator.mul, "+": operator.add, "-": operator.sub}


doc, tables, paper_lines = paper_fixtures("wang2022", PAPER_TXT)


def columns(table):
    return list(table["columns_printed"])


def decimals(table, column):
    d = table["decimals"]
    return d[column] if isinstance(d, dict) else d


def std_expected(table):
    """{row: [columns]} that must carry a std."""
    if not table.get("std_printed", True):
        return {}
    skip_rows = set(table.get("rows_without_std", []))
    skip_cols = set(table.get("columns_without_std", []))
    return {
        row: [c for c in columns(table) if c not in skip_cols]
        for row in table["values"]
        if row not in skip_rows
    }


def test_shipped_as_package_data():
    assert resources.files("kdaug.papers").joinpath("values/wang2022.yaml").is_file()


def test_top_level(doc, tables):
    assert doc["paper"] == "wang2022"
    assert "wang2022.txt" in doc["source"]
    assert list(tables) == [TABLE_KEYS[n] for n in range(1, 11)]
    for n, key in TABLE_KEYS.items():
        assert tables[key]["number"] == n
        assert tables[key]["caption"]


@pytest.mark.parametrize("n", sorted(TABLE_KEYS))
def test_rows_share_columns_and_numbers_are_floats(tables, n):
    table = tables[TABLE_KEYS[n]]
    cols = columns(table)
    assert cols, "no columns"
    if isinstance(table["decimals"], dict):
        assert list(table["decimals"]) == cols
    for row, cells in table["values"].items():
        assert list(cells) == cols, row
        for c, v in cells.items():
            assert type(v) is float, (row, c, v)
            d = decimals(table, c)
            assert round(v, d) == v, (row, c, v, d)  # printed with at most d decimals
    expected = std_expected(table)
    std = table.get("std", {})
    assert set(std) == set(expected)
    for row, cols_with_std in expected.items():
        assert list(std[row]) == cols_with_std, row
        for c, s in std[row].items():
            assert type(s) is float and s >= 0, (row, c, s)
            assert round(s, decimals(table, c)) == s, (row, c, s)


@pytest.mark.parametrize("n", [1, 2])
def test_accuracy_tables(tables, n):
    table = tables[TABLE_KEYS[n]]
    assert table["unit"] == "percent"
    assert table["prolonged_epochs"] == {1: 960, 2: 480}[n]
    k = table["prolonged_epochs"] // table["default_epochs"]
    assert table["prolonged_lr_milestones_derived"] == [150 * k, 180 * k, 210 * k]
    assert list(table["values"]) == ACC_ROWS
    assert columns(table) == PAIRS
    assert table["rows_without_std"] == ["teacher_accuracy", "student_accuracy"]
    assert table["bold"] is None  # lost in the text extraction
    values = table["values"]
    for row in ACC_ROWS:
        assert all(0 < v < 100 for v in values[row].values()), row
    # A teacher (student) printed in two columns carries the same CE accuracy in both.
    for side, row in ((0, "teacher_accuracy"), (1, "student_accuracy")):
        by_arch: dict[str, set[float]] = {}
        for pair in PAIRS:
            by_arch.setdefault(pair.split("__")[side], set()).add(values[row][pair])
        assert all(len(v) == 1 for v in by_arch.values()), (row, by_arch)
    # Underlined cells exist; the recorded rule check matches a recomputation.
    underlined = [tuple(x) for x in table["underlined"]]
    for row, col in underlined:
        assert col in values[row]
    second = set()
    for col in PAIRS:
        for block in (KD_BLOCK, CRD_BLOCK):
            ranked = sorted(block, key=lambda r, c=col: -values[r][c])
            second.add((ranked[1], col))
    check = table["underline_rule_check"]
    assert {tuple(x) for x in check["second_not_underlined"]} == second - set(underlined)
    assert {tuple(x) for x in check["underlined_not_second"]} == set(underlined) - second


def test_column_names_use_known_architectures(tables):
    for key, table in tables.items():
        for c in columns(table):
            parts = c.split("__")
            metric = parts[-1] if parts[-1] in {"tstddev", "vbar", "rbar", "test_loss"} else None
            archs = parts[:-1] if metric else parts
            assert archs and set(archs) <= ARCHS, (key, c)


@pytest.mark.parametrize("n", TSTDDEV_TABLES)
def test_tstddev_tables(tables, n):
    table = tables[TABLE_KEYS[n]]
    assert list(table["values"]) == DA_ROWS  # 9 DA rows, in printed order
    assert len(table["values"]) == 9
    assert table["tstddev_scale"] == pytest.approx(1e-3)
    teachers = [c.split("__")[0] for c in columns(table) if c.endswith("__tstddev")]
    assert teachers
    for c in columns(table):
        assert c.endswith(("__tstddev", "__test_loss")), c
        if c.endswith("__test_loss"):
            teacher, student, _ = c.split("__")
            assert teacher in teachers and student, c
    labels = table["row_labels_printed"]
    assert labels["flip_crop"] == "KD+Crop+Flip"
    assert list(labels) == DA_ROWS


@pytest.mark.parametrize("n", ARROW_TABLES)
def test_arrows_follow_numbers_except_listed_typos(doc, tables, n):
    key = TABLE_KEYS[n]
    table = tables[key]
    values, arrows = table["values"], table["arrows"]
    assert list(values) == DA_ROWS
    assert table["row_labels_printed"]["flip_crop"] == "KD+Flip+Crop"
    assert list(arrows) == DA_ROWS[1:]  # none for the first row
    listed = {
        (t["row"], t["column"])
        for t in doc["suspected_typos"]
        if t["kind"] == "arrow" and t["table"] == key
    }
    for i, row in enumerate(DA_ROWS[1:], start=1):
        assert list(arrows[row]) == columns(table), row
        for col, arrow in arrows[row].items():
            assert arrow in {"up", "down"}
            now, above = values[row][col], values[DA_ROWS[i - 1]][col]
            agrees = (arrow == "up" and now > above) or (arrow == "down" and now < above)
            assert agrees != ((row, col) in listed), (row, col, arrow, above, now)


def test_tables_9_10_share_test_losses(tables):
    t9, t10 = tables[TABLE_KEYS[9]], tables[TABLE_KEYS[10]]
    for row in DA_ROWS:
        loss9 = {c: v for c, v in t9["values"][row].items() if c.endswith("__test_loss")}
        loss10 = {c: v for c, v in t10["values"][row].items() if c.endswith("__test_loss")}
        assert loss9 == loss10 and len(loss9) == 6


def test_suspected_typos_are_present(doc, tables):
    typos = doc["suspected_typos"]
    assert typos
    for t in typos:
        assert t["reason"]
        if t["kind"] == "cross_table":
            printed = tables[t["table"]]["values"][t["row"]][t["column"]]
            other = tables[t["other_table"]]["values"][t["row"]][t["column"]]
            assert printed == t["printed"] and other == t["other_printed"], t
            assert printed != other, t
        elif t["kind"] == "arithmetic":
            a, op, b = t["expression"].split()
            computed = OPS[op](float(a), float(b))
            assert computed == t["computed"] and computed != t["printed"], t
        elif t["kind"] == "arrow":
            assert t["row"] in tables[t["table"]]["arrows"]  # checked in the arrow test
        else:
            raise AssertionError(f"unknown kind {t['kind']}")


def test_cross_table_list_is_complete(doc, tables):
    """Every test-loss cell Tables 9/10 share with Tables 3/4 is equal or listed as a typo."""
    listed = {
        (t["table"], t["row"], t["column"], t["other_table"])
        for t in doc["suspected_typos"]
        if t["kind"] == "cross_table"
    }
    found = set()
    for n in ARROW_TABLES:
        for row in DA_ROWS:
            for col, v in tables[TABLE_KEYS[n]]["values"][row].items():
                if not col.endswith("__test_loss"):
                    continue
                src = [k for k in (TABLE_KEYS[3], TABLE_KEYS[4]) if col in tables[k]["values"][row]]
                assert len(src) == 1, col
                if tables[src[0]]["values"][row][col] != v:
                    found.add((TABLE_KEYS[n], row, col, src[0]))
    assert found == listed
    assert len(found) == 14


def test_text_facts(doc):
    facts = {f["topic"]: f for f in doc["text_facts"]}
    for topic in (
        "kd_temperature", "kd_alpha", "batch_size", "epochs_and_lr_schedule", "initial_lr",
        "prolonged_schedule", "cutmixpick_ratio", "tstddev_samples_per_mean",
        "tstddev_batches_per_mean", "tstddev_epochs", "vbar_rbar_batches", "bad_da_mbar",
        "fig4_correlation",
    ):  # fmt: skip
        assert facts[topic]["quote"], topic
    assert facts["batch_size"]["value"] == 64
    assert facts["initial_lr"]["value"] == 0.05
    assert "0.022439" in facts["bad_da_mbar"]["quote"]
    assert "300, 360, and 420" in facts["prolonged_schedule"]["quote"]


def test_quotes_are_verbatim(doc, paper_lines):
    plain = "\n".join(paper_lines).replace("*", "")
    quotes = [f["quote"] for f in doc["text_facts"]]
    for t in doc["suspected_typos"]:
        quotes += [t[k] for k in ("quote", "other_quote") if k in t]
    for q in quotes:
        assert q in plain, q


@pytest.mark.parametrize("n", sorted(TABLE_KEYS))
def test_values_match_paper_text(tables, paper_lines, n):
    """Each row's numbers, formatted with the recorded decimals, equal the printed line."""
    table = tables[TABLE_KEYS[n]]
    start = next(i for i, line in enumerate(paper_lines) if line.startswith(f"Table {n}:"))
    block = paper_lines[start + 1 : start + 25]
    labels = table["row_labels_printed"]
    std = table.get("std", {})
    for row, cells in table["values"].items():
        line = next(x for x in block if x.split("\t")[0].strip() == labels[row])
        expected = []
        for c, v in cells.items():
            d = decimals(table, c)
            expected.append(f"{v:.{d}f}")
            if c in std.get(row, {}):
                expected.append(f"{std[row][c]:.{d}f}")
        printed = re.findall(r"[0-9]+\.[0-9]+", line.split("\t", 1)[1])
        assert printed == expected, (row, line)
        if n in ARROW_TABLES and row != DA_ROWS[0]:
            marks = re.findall(r"[↑↓]", line)
            want = ["↑" if a == "up" else "↓" for a in table["arrows"][row].values()]
            assert marks == want, row
        if n in (1, 2):
            underlined = re.findall(r"<u>([0-9.]+)</u>", line)
            want = [f"{cells[c]:.2f}" for r, c in table["underlined"] if r == row]
            assert underlined == want, row


def test_imagenet_tables_are_wired_to_their_experiments(tables):
    """Tables 7-8 (appendix A.1) sit beside wang2022_imagenet100_da / wang2022_imagenet_da:
    our resnet34_imagenet -> resnet18_imagenet pair is the paper's resnet34 -> resnet18
    (``paper_archs``), and the lookup returns the printed numbers."""
    from kdaug import plan
    from kdaug.papers.wang2022 import PAPER_TABLES, _paper_lookup, paper_arch

    config = plan.load_layered_config([ROOT / "config/config.yaml"])
    printed = {  # paper text, Tables 7 and 8: KD+CutMixPick (T. ent.) and KD+Identity rows
        "wang2022_imagenet100_da": {"cutmixpick_t": (2.165, 0.6364), "identity": (2.545, 0.6713)},
        "wang2022_imagenet_da": {"cutmixpick_t": (0.578, 1.1955), "identity": (0.702, 1.2103)},
    }
    for name, rows in printed.items():
        exp = config["experiments"][name]
        assert exp["dataset"] in PAPER_TABLES
        teacher = paper_arch(exp, exp["teachers"]["archs"][0])
        student = paper_arch(exp, exp["students"]["archs"][exp["teachers"]["archs"][0]][0])
        assert (teacher, student) == ("resnet34", "resnet18")
        lookup = _paper_lookup(exp, "tstddev")
        for row, (tstddev, loss) in rows.items():
            assert lookup(row, f"{teacher}__tstddev") == (tstddev, 3)
            assert lookup(row, f"{teacher}__{student}__test_loss") == (loss, 4)
        schemes = [a.removeprefix("append_") for a in exp["students"]["augmentations"]]
        assert schemes == DA_ROWS  # the tables' nine rows, in order
