"""The experiment report framework (experiments/report.py), without running any experiment.

Every test points ``report.RESULTS`` at a temporary folder, so nothing under
experiments/results/ is touched.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import report  # noqa: E402


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    return tmp_path


def test_table_formats_floats_and_keeps_other_cells():
    md = report.table(["name", "x", "n"], [["a", 0.123456, 3], ["b", 1e-9, "7"]], ".2g")
    assert md.splitlines() == [
        "| name | x | n |",
        "|---|---|---|",
        "| a | 0.12 | 3 |",
        "| b | 1e-09 | 7 |",
    ]


def test_table_default_format():
    assert report.table(["x"], [[2.0 / 3.0]]).splitlines()[-1] == "| 0.6667 |"


def _section(key, text="body", numbers=None):
    return report.Section(key, f"Title of {key}", text, numbers or {"v": 1.5})


def test_write_section_stores_markdown_json_and_report(results):
    key = report.ORDER[1]
    report.write_section(_section(key, "some *text*", {"a": 1, "b": [0.5]})._replace(
        seconds=2.0))
    md = (results / f"{key}.md").read_text()
    assert md.startswith(f"## Title of {key}\n\nsome *text*\n")
    assert f"*({key}.py, 2.0 s)*" in md
    assert json.loads((results / f"{key}.json").read_text()) == {"a": 1, "b": [0.5]}
    full = (results / "REPORT.md").read_text()
    assert full.startswith("# bpjax experiments\n")
    assert "- machine: " in full and "jax " in full
    assert f'<a id="{key}"></a>' in full and f"1. [{key}](#{key})" in full
    missing = [k for k in report.ORDER if k != key]
    assert "*Not run yet: " + ", ".join(missing) + ".*" in full


def test_build_report_follows_order_not_write_order(results):
    first, last = report.ORDER[0], report.ORDER[-1]
    report.write_section(_section(last, "LAST"))
    report.write_section(_section(first, "FIRST"))
    full = report.build_report().read_text()
    assert full.index("FIRST") < full.index("LAST")
    assert f"1. [{first}](#{first})\n2. [{last}](#{last})" in full
    assert not list(results.glob("*.tmp"))  # atomic writes leave nothing behind


def test_numbers_may_hold_numpy_values(results):
    np = pytest.importorskip("numpy")
    key = report.ORDER[0]
    report.write_section(_section(key, numbers={"x": np.float32(0.5), "y": np.float64(2.0)}))
    assert json.loads((results / f"{key}.json").read_text()) == {"x": 0.5, "y": 2.0}


def test_run_times_the_experiment_and_stores_it(results):
    key = report.ORDER[2]
    section = report.run(lambda: _section(key))
    assert section.seconds >= 0.0
    assert (results / f"{key}.md").exists() and (results / "REPORT.md").exists()


def test_save_figure_writes_a_png_and_returns_its_link(results):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    link = report.save_figure(fig, "tiny")
    assert link == "![tiny](tiny.png)"
    assert (results / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(results.glob("*.tmp"))


def test_every_experiment_in_order_has_a_script():
    folder = Path(report.__file__).resolve().parent
    for key in report.ORDER:
        assert (folder / f"{key}.py").exists(), key
