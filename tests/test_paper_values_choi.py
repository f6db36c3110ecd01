"""Structural checks of the Choi et al. 2023 paper-values record (papers/values/choi2023.yaml)."""

import math
import re
from importlib import resources
from itertools import pairwise
from pathlib import Path

import pytest

from paper_values_fixtures import paper_fixtures

ROOT = Path(__file__).resolve().parents[1]
PAPER_TXT = ROOT.parent / "shared" / "papers" / "choi2023.txt"

TABLE_KEYS = {
    "table1_cifar100_accuracy": 1,
    "table2_imagenet_accuracy": 2,
    "table3_cifar100_fgsm": 3,
    "table3_cifar100_ifgsm": 3,
    "table4_cifar100_alpha_pmu": 4,
}
T1, T2, T3F, T3I, T4 = TABLE_KEYS
T1_ROWS = [
    "teacher", "student", "kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft",
    "nst", "crd", "ickd", "ours_no_mixup", "ours_pmu10", "ours_pmu50", "ours_fmu",
]  # fmt: skip
T1_PAIRS = [
    "wrn_40_2__wrn_16_2", "wrn_40_2__wrn_40_1", "resnet56__resnet20", "resnet110__resnet20",
    "resnet110__resnet32", "resnet32x4__resnet8x4", "vgg13__vgg8", "vgg13__MobileNetV2",
    "ResNet50__MobileNetV2", "ResNet50__vgg8", "resnet32x4__ShuffleV1", "resnet32x4__ShuffleV2",
    "wrn_40_2__ShuffleV1",
]  # fmt: skip
T2_ROWS = ["teacher", "student", "kd", "at", "rkd", "sp", "cc", "crd", "ours_pmu10", "ours_fmu"]
T3_COLUMNS = [
    "vanilla", "vanilla_mixup", "kd", "kd_mixup", "ickd", "ickd_mixup", "crd", "crd_mixup", "ours",
]  # fmt: skip
EPS = {"eps_0.0": 0.0, "eps_0.001": 0.001, "eps_0.003": 0.003, "eps_0.005": 0.005, "eps_0.01": 0.01}
T4_ROWS = ["pmu10", "pmu30", "pmu50", "pmu80", "fmu"]
ALPHAS = {"alpha_0.1": 0.1, "alpha_0.2": 0.2, "alpha_0.4": 0.4, "alpha_0.7": 0.7, "alpha_1.0": 1.0}
ARCHS = {
    "wrn_40_2", "wrn_16_2", "wrn_40_1", "resnet56", "resnet20", "resnet110", "resnet32",
    "resnet32x4", "resnet8x4", "vgg13", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2",
    "ResNet50", "resnet34", "resnet18",
}  # fmt: skip

# Cells that report the same setting twice (Sec. 5.2 / 5.3 against Table 1):
# (table, row, column) -> (Table 1 row, Table 1 column). column None: Table 4's without_mixup.
SAME_SETTING = {
    **{(T3F, "eps_0.0", c): (r, "resnet110__resnet20") for c, r in [
        ("vanilla", "student"), ("kd", "kd"), ("ickd", "ickd"), ("crd", "crd"),
        ("ours", "ours_pmu10"),
    ]},
    (T4, "pmu10", "alpha_1.0"): ("ours_pmu10", "wrn_40_2__wrn_16_2"),
    (T4, "pmu50", "alpha_1.0"): ("ours_pmu50", "wrn_40_2__wrn_16_2"),
    (T4, "fmu", "alpha_1.0"): ("ours_fmu", "wrn_40_2__wrn_16_2"),
    (T4, "kd", None): ("kd", "wrn_40_2__wrn_16_2"),
    (T4, "vanilla", None): ("student", "wrn_40_2__wrn_16_2"),
}  # fmt: skip


doc, tables, paper_lines = paper_fixtures("choi2023", PAPER_TXT)


def columns(table):
    return list(table["columns_printed"])


def decimals(table, row, column):
    for r, c, d in table.get("decimals_exceptions", []):
        if (r, c) == (row, column):
            return d
    return table["decimals"]


def cell(tables, table, row, column):
    t = tables[table]
    return t["without_mixup"][row] if column is None else t["values"][row][column]


def test_shipped_as_package_data():
    assert resources.files("kdaug.papers").joinpath("values/choi2023.yaml").is_file()


def test_top_level(doc, tables):
    assert doc["paper"] == "choi2023"
    assert "choi2023.txt" in doc["source"]
    assert list(tables) == list(TABLE_KEYS)
    for key, n in TABLE_KEYS.items():
        assert tables[key]["number"] == n
        assert tables[key]["caption"] and tables[key]["setting"]
        assert tables[key]["unit"] == "percent"
    assert doc["ambiguities"] and all(isinstance(a, str) for a in doc["ambiguities"])


@pytest.mark.parametrize("key", list(TABLE_KEYS))
def test_rows_share_columns_and_numbers_are_floats(tables, key):
    table = tables[key]
    cols = columns(table)
    assert cols, "no columns"
    assert set(table["row_labels_printed"]) == set(table["values"])
    for row, cells in table["values"].items():
        assert list(cells) == cols, row
        for c, v in cells.items():
            assert type(v) is float, (row, c, v)
            assert 0 < v < 100, (row, c, v)
            d = decimals(table, row, c)
            assert round(v, d) == v, (row, c, v, d)  # printed with at most d decimals


def test_column_names_use_known_architectures(tables):
    for key in (T1, T2):
        for c in columns(tables[key]):
            parts = c.split("__")
            archs = parts[:-1] if parts[-1] in {"top1", "top5"} else parts
            assert len(archs) == 2 and set(archs) <= ARCHS, (key, c)
    for key in (T3F, T3I, T4):
        assert {tables[key]["teacher"], tables[key]["student"]} <= ARCHS


def test_table1(tables):
    table = tables[T1]
    values = table["values"]
    assert list(values) == T1_ROWS
    assert columns(table) == T1_PAIRS
    assert table["quoted_from_ref27"] + table["own_runs"] == T1_ROWS
    assert table["method_rows"] == T1_ROWS[2:]
    assert table["bold"] is None and table["second_best_red"] is None  # lost in extraction
    exceptions = {(r, c) for r, c, _ in table["decimals_exceptions"]}
    assert exceptions == {("student", "vgg13__MobileNetV2"), ("student", "ResNet50__MobileNetV2")}
    # A teacher (student) printed in several columns carries the same accuracy in each.
    for side, row in ((0, "teacher"), (1, "student")):
        by_arch: dict[str, set[float]] = {}
        for pair in T1_PAIRS:
            by_arch.setdefault(pair.split("__")[side], set()).add(values[row][pair])
        assert all(len(v) == 1 for v in by_arch.values()), (row, by_arch)
    # The derived best / second-best cells match a recomputation (no ties).
    best, second = [], []
    for col in T1_PAIRS:
        ranked = sorted(table["method_rows"], key=lambda r, c=col: -values[r][c])
        assert values[ranked[0]][col] > values[ranked[1]][col] > values[ranked[2]][col]
        best.append([ranked[0], col])
        second.append([ranked[1], col])
    assert table["best_computed"] == best
    assert table["second_best_computed"] == second
    # "our student trained with PMU performs better than the teacher" exactly in the two
    # columns the text names.
    beats = {
        c for c in T1_PAIRS
        if max(values["ours_pmu10"][c], values["ours_pmu50"][c]) > values["teacher"][c]
    }  # fmt: skip
    assert beats == {"wrn_40_2__wrn_16_2", "wrn_40_2__ShuffleV1"}


def test_table2(tables):
    table = tables[T2]
    values = table["values"]
    assert list(values) == T2_ROWS
    assert columns(table) == ["resnet34__resnet18__top1", "resnet34__resnet18__top5"]
    assert table["printed_transposed"] is True
    # "boosts the top-1 and top-5 accuracy by 2.07% and 1.56% over the baseline"
    gain = [
        round(values["ours_fmu"][c] - values["student"][c], 2) for c in columns(table)
    ]  # fmt: skip
    assert gain == [2.07, 1.56]
    for c in columns(table):
        assert values["ours_fmu"][c] > values["ours_pmu10"][c]  # full mixup better than 10%


@pytest.mark.parametrize("key", [T3F, T3I])
def test_table3_structure(tables, key):
    table = tables[key]
    assert table["attack"] == {T3F: "fgsm", T3I: "ifgsm"}[key]
    assert (table["teacher"], table["student"]) == ("resnet110", "resnet20")
    assert list(table["values"]) == list(EPS)
    assert table["eps"] == EPS
    assert all(type(e) is float for e in table["eps"].values())
    assert columns(table) == T3_COLUMNS
    assert table["mixup"]["ours"] == {"fraction": 0.1, "alpha": 1.0}
    for c in T3_COLUMNS[:-1]:
        want = {"fraction": 1.0, "alpha": 0.2} if c.endswith("_mixup") else None
        assert table["mixup"][c] == want, c
    for c in T3_COLUMNS:  # accuracy falls as eps grows
        seq = [table["values"][e][c] for e in EPS]
        assert all(a > b for a, b in pairwise(seq)), (c, seq)
    if key == T3I:
        assert table["iterations"] == 10


def test_table3_clean_rows_agree_between_attacks(doc, tables):
    fgsm, ifgsm = tables[T3F]["values"]["eps_0.0"], tables[T3I]["values"]["eps_0.0"]
    listed = {
        (t["row"], t["column"])
        for t in doc["suspected_typos"]
        if t["kind"] == "cross_table" and {t["table"], t["other_table"]} == {T3F, T3I}
    }
    for c in T3_COLUMNS:
        assert (fgsm[c] == ifgsm[c]) != (("eps_0.0", c) in listed), c


def test_table4(tables):
    table = tables[T4]
    assert (table["teacher"], table["student"]) == ("wrn_40_2", "wrn_16_2")
    assert table["runs"] == 3
    assert list(table["values"]) == T4_ROWS
    assert columns(table) == list(ALPHAS)
    assert table["alpha"] == ALPHAS
    assert table["pmu_fraction"] == {"pmu10": 0.1, "pmu30": 0.3, "pmu50": 0.5, "pmu80": 0.8,
                                     "fmu": 1.0}  # fmt: skip
    wo = table["without_mixup"]
    assert list(wo) == ["kd", "vanilla"]
    assert all(type(v) is float for v in wo.values())
    assert {k: f"{v:.2f}%" for k, v in wo.items()} == table["without_mixup_printed"]
    # Sec. 5.3: FMU (alpha 0.2) and PMU (50%, alpha 0.7) "have similar test performance".
    assert abs(table["values"]["fmu"]["alpha_0.2"] - table["values"]["pmu50"]["alpha_0.7"]) < 0.05


def test_suspected_typos_are_present(doc, tables):
    """Each listed typo is in the record; quotes are checked in test_quotes_are_verbatim."""
    typos = doc["suspected_typos"]
    assert typos
    for t in typos:
        assert t["reason"], t
        if t["kind"] == "cross_table":
            assert t["strength"] in {"medium", "weak"}
            printed = cell(tables, t["table"], t["row"], t["column"])
            other = cell(tables, t["other_table"], t["other_row"], t["other_column"])
            assert printed == t["printed"] and other == t["other_printed"], t
            assert printed != other, t
        elif t["kind"] == "claim":
            values = tables[t["table"]]["values"]
            assert values[t["row"]][t["column"]] == t["printed"], t
            assert values[t["other_row"]][t["column"]] == t["other_printed"], t
            assert t["printed"] <= t["other_printed"], t  # the claimed ">" fails here
            assert t["quote"], t
        elif t["kind"] == "text":
            assert t["quote"] and t["reading"] not in t["quote"], t
        else:
            raise AssertionError(f"unknown kind {t['kind']}")


def test_cross_table_list_is_complete(doc, tables):
    """Every cell printed twice for the same setting is equal or listed as a typo."""
    listed = {
        (t["table"], t["row"], t["column"], t["other_row"], t["other_column"])
        for t in doc["suspected_typos"]
        if t["kind"] == "cross_table" and t["other_table"] == T1
    }
    found = set()
    for (table, row, column), (row1, col1) in SAME_SETTING.items():
        if cell(tables, table, row, column) != tables[T1]["values"][row1][col1]:
            found.add((table, row, column, row1, col1))
    assert found == listed
    # The I-FGSM clean row equals the FGSM one, so its mismatches are the same ones.
    for table, row, column, _, _ in found:
        if table == T3F:
            assert tables[T3I]["values"][row][column] == tables[T3F]["values"][row][column]


def test_pmu_claim_exceptions_are_listed(doc, tables):
    """'students trained with PMU consistently outperform the ones trained without mixup'."""
    values = tables[T1]["values"]
    failing = {
        (r, c)
        for r in ("ours_pmu10", "ours_pmu50")
        for c in T1_PAIRS
        if values[r][c] <= values["ours_no_mixup"][c]
    }
    listed = {(t["row"], t["column"]) for t in doc["suspected_typos"] if t["kind"] == "claim"}
    assert failing == listed == {("ours_pmu50", "resnet56__resnet20")}


def test_text_facts(doc):
    facts = {f["topic"]: f for f in doc["text_facts"]}
    assert len(facts) == len(doc["text_facts"])  # topics are unique
    for topic in (
        "fig2_temperature", "fig2_scenarios", "fig2_teachers", "fig1_classes", "fig3_classes",
        "vscore", "cifar_recipe", "loss_weights", "pmu_definition", "rescaled_logits_definition",
        "eq3_rescaled_kd", "eq4_objective", "ifgsm_iterations", "attack_eps", "attack_mixup",
        "imagenet_recipe", "imagenet_batch_size", "imagenet_gain", "fig4_accuracies",
        "fig5_temperatures", "fig6_grid", "table1_settings",
    ):  # fmt: skip
        assert facts[topic]["quote"] and facts[topic]["section"], topic
    assert "240 epochs" in facts["cifar_recipe"]["quote"]
    assert "0.1 and 0.9" in facts["loss_weights"]["quote"]
    assert "2.07% and 1.56%" in facts["imagenet_gain"]["quote"]
    assert "10 iterations" in facts["ifgsm_iterations"]["quote"]
    assert "30, 60, and 80" in facts["imagenet_recipe"]["quote"]
    assert facts["imagenet_batch_size"]["value"] == 256
    for cls in ("Baby", "Boy", "Girl", "Man", "Woman", "Beaver", "Apple", "Aquarium Fish",
                "Rocket", "Turtle"):  # fmt: skip
        assert cls in facts["fig3_classes"]["quote"]
    assert "[0.2, 0.4, 0.7, 1.0]" in facts["fig6_grid"]["quote"]
    assert r"\mathcal{T}=1" in facts["fig5_temperatures"]["quote"]


def test_quotes_are_verbatim(doc, paper_lines):
    plain = "\n".join(paper_lines).replace("*", "")
    quotes = [f["quote"] for f in doc["text_facts"]]
    quotes += [t["quote"] for t in doc["suspected_typos"] if "quote" in t]
    for q in quotes:
        assert q in plain, q


def _numbers(fields):
    return [x for f in fields for x in re.findall(r"[0-9]+\.[0-9]+", f)]


def test_values_match_paper_text(tables, paper_lines):
    """Each row's numbers, formatted with the recorded decimals, equal the printed line."""
    rows = [line.split("\t") for line in paper_lines if "\t" in line]

    def line_for(label, field=0):
        hits = [r for r in rows if len(r) > field and r[field].strip() == label]
        assert len(hits) >= 1, label
        return hits

    # Table 1: one line per row label.
    t1 = tables[T1]
    for row, cells in t1["values"].items():
        (line,) = line_for(t1["row_labels_printed"][row])
        want = [f"{v:.{decimals(t1, row, c)}f}" for c, v in cells.items()]
        assert _numbers(line[1:]) == want, row
    # Table 2: printed transposed (a header line of labels, a Top-1 and a Top-5 line).
    t2 = tables[T2]
    header = next(r for r in rows if r[:3] == ["", "Teacher", "Student"])
    assert header[1:] == [t2["row_labels_printed"][r] for r in t2["values"]]
    for c, label in t2["columns_printed"].items():
        (line,) = line_for(label)
        assert _numbers(line[1:]) == [f"{t2['values'][r][c]:.2f}" for r in t2["values"]], c
    # Table 3: the FGSM block precedes the I-FGSM block; cells are "a(b)" or "a".
    for key, n in ((T3F, 0), (T3I, 1)):
        t3 = tables[key]
        for row, cells in t3["values"].items():
            line = line_for(t3["row_labels_printed"][row])[n]
            assert _numbers(line[1:]) == [f"{v:.2f}" for v in cells.values()], (key, row)
            assert all(re.fullmatch(r"[0-9.]+\([0-9.]+\)", p) for p in line[1:5]), line
    # Table 4: the label is the second tab field.
    t4 = tables[T4]
    for row, cells in t4["values"].items():
        (line,) = line_for(t4["row_labels_printed"][row], field=1)
        assert _numbers(line[2:]) == [f"{v:.2f}" for v in cells.values()], row
    for row, printed in t4["without_mixup_printed"].items():
        (line,) = line_for(t4["without_mixup_labels_printed"][row], field=1)
        assert [f for f in line[2:] if f] == [printed], row
    alpha_header = next(r for r in rows if r[1:2] == ["$\\alpha$"])
    assert alpha_header[2:] == list(t4["columns_printed"].values())
    assert all(math.isclose(float(h), a) for h, a in zip(alpha_header[2:], ALPHAS.values(),
                                                          strict=True))  # fmt: skip
