"""``python -m harness.plan ... --html FILE``: one offline page, GPUs marked by the planner's own verdict, records beside predictions."""

from __future__ import annotations

import json
import re

import pytest
from plotly.offline import get_plotlyjs

from harness.config.hardware import load_catalogue
from harness.files import write_json_atomic
from harness.plan.__main__ import main
from harness.plan.calibrate import prediction_cells
from harness.store import layout as store
from harness.store.records import new_record

pytestmark = pytest.mark.unit
DONE_WHEN = ["model=llama", "quant=4bit", "lora.r=16", "train.batch_size=4", "train.max_seq_len=2048"]
MODEL = {"name": "tiny-llama", "arch": "llama", "tiny": True, "num_layers": 4, "hidden_size": 256, "num_heads": 4,
         "num_kv_heads": 2, "intermediate_size": 512, "vocab_size": 2048}


def _verdicts(page: str) -> dict:
    """GPU -> the verdict the catalogue table shows for the (single) planned cell."""
    rows = re.findall(r'<tr><td>([a-z0-9-]+)</td>.*?<td class="(?:fits|short) text">(fits|does not fit)</td></tr>', page, re.S)
    return dict(rows)


def test_page_is_offline_lists_the_catalogue_and_marks_the_planners_verdict(tmp_path, capsys):
    assert main([*DONE_WHEN, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plans"][0]
    expected = {row["gpu"]: "fits" if row["fits"] else "does not fit" for row in plan["gpus"]}
    assert {"fits", "does not fit"} == set(expected.values())  # this config fits some GPUs and not others

    out = tmp_path / "plan.html"
    assert main([*DONE_WHEN, "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1 and page.count("plotly.js v") == 1
    rest = page.replace(bundle, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", rest, re.I)
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", rest, re.I)
    assert _verdicts(page) == expected
    for name in load_catalogue():
        assert f"<td>{name}</td>" in page
    assert 'id="plan-capacity"' in page and "Measured vs predicted" not in page


def test_same_plan_writes_the_same_bytes_and_leaves_stdout_alone(tmp_path, capsys):
    assert main(DONE_WHEN) == 0
    plain = capsys.readouterr().out
    first, second = tmp_path / "a.html", tmp_path / "sub" / "b.html"
    assert main([*DONE_WHEN, "--html", str(first)]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain and f"wrote {first}" in captured.err
    assert main([*DONE_WHEN, "--html", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert not re.search(r'"uid"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}', first.read_text(encoding="utf-8").replace(get_plotlyjs(), ""))


def test_a_grid_gets_every_point_a_dropdown_and_a_fit_matrix(tmp_path, capsys):
    out = tmp_path / "grid.html"
    assert main(["-m", *DONE_WHEN[:2], "lora.r=8,64", "train.batch_size=1,4", "--html", str(out), "--gpu", "l4",
                 "--gpu", "h200"]) == 0
    page = out.read_text(encoding="utf-8")
    assert 'id="plan-fit-matrix"' in page and '"updatemenus"' in page
    for label in ("llama lora r=8 4bit b1x", "llama lora r=64 4bit b4x", "llama lora r=8 4bit b4x", "llama lora r=64 4bit b1x"):
        assert label in page
    assert capsys.readouterr().out.count("| llama |") == 4  # the grid table is printed as before


def _sweep(root):
    """A run root with three cells in the store and a sweep folder whose manifest lists them."""
    config = {"model": MODEL, "peft": {"method": "lora"}, "lora": {"r": 8}, "quant": {"mode": "none"},
              "train": {"batch_size": 4, "max_seq_len": 64}, "framework": {"name": "hf"}}
    cells = {}
    for cid, status, measured in (("tiny-a", "ok", 700.0), ("tiny-b", "ok", 650.0), ("tiny-c", "failed", None)):
        memory = {"train_peak": {"counter": "host_peak_rss", "peak_mib": measured}} if measured else {}
        record = new_record(cid, status, config, memory=memory, environment={"device": "cpu"},
                            train={"max_batch_shape": [4, 64], "max_batch_loss_tokens": 128})
        write_json_atomic(root / "cells" / cid / "cell.json", {"cell_id": cid, "config": config})
        write_json_atomic(root / "cells" / cid / "record.json", record)
        cells[cid] = record
    sweep = root / "sweep"
    sweep.mkdir()
    store.write_manifest(sweep, {str(i): {"cell_id": cid, "evals": {}} for i, cid in enumerate(cells)})
    return sweep, cells


def test_records_show_measured_beside_predicted_with_the_error(tmp_path):
    sweep, cells = _sweep(tmp_path / "runs")
    out = tmp_path / "plan.html"
    assert main(["model=tiny-llama", "--device", "cpu", "--html", str(out), "--records", str(sweep)]) == 0
    page = out.read_text(encoding="utf-8")
    assert 'id="plan-records"' in page and "Measured vs predicted" in page
    for cid in ("tiny-a", "tiny-b"):
        pred = prediction_cells(cells[cid])
        measured = cells[cid]["memory"]["train_peak"]["peak_mib"]
        row = (f'<td>{cid}</td><td class="text">ok</td><td class="text">host_peak_rss</td>\n'
               f'<td>{measured:.0f}</td><td>{pred["pred_mem_mib"]:.0f}</td><td>{pred["pred_err_pct"]:+.1f}</td>')
        assert row in page
    assert '<td>tiny-c</td><td class="text">failed</td><td class="text">—</td>' in page  # listed, not drawn
    assert "measured MiB" in page and "No GPU comparison" in page
    # a run root (no manifest) finds the same cells
    again = tmp_path / "root.html"
    assert main(["model=tiny-llama", "--device", "cpu", "--html", str(again), "--records", str(tmp_path / "runs")]) == 0
    assert again.read_text(encoding="utf-8").count("<td>tiny-a</td>") == 1


def test_records_folder_without_records_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "plan.html"
    assert main(["model=tiny-llama", "--gpu", "l4", "--html", str(out), "--records", str(tmp_path / "empty")]) == 0
    assert f"No records in {tmp_path / 'empty'}." in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--records", "/no/such/sweep"], "--records=/no/such/sweep: only used with --html FILE"),
        (["--records", "/no/such/sweep", "--html", "{tmp}/p.html"], "--records=/no/such/sweep: no such folder"),
        (["--html", "{tmp}/file/p.html"], "--html={tmp}/file/p.html: cannot write"),
    ],
)
def test_bad_html_options_are_one_line_and_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "file").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["model=tiny-llama", "--gpu", "l4", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle.replace("{tmp}", str(tmp_path)) in err and "\n" not in err


def test_page_says_what_the_hours_are_for_and_what_is_not_modelled(tmp_path):
    gpu, cpu = tmp_path / "gpu.html", tmp_path / "cpu.html"
    assert main([*DONE_WHEN, "--examples", "1000", "--html", str(gpu)]) == 0
    page = gpu.read_text(encoding="utf-8")
    assert "Hours and USD (in each GPU's hover) are for 1,000 examples x 2,048 tokens each" in page
    assert "is not modelled" not in page
    assert main(["-m", "model=tiny-llama", "quant=none,4bit", "--device", "cpu", "--html", str(cpu)]) == 0
    page = cpu.read_text(encoding="utf-8")
    assert page.count("Note: CPU 4bit is not modelled") == 1 and "Hours and USD" not in page
