"""``python -m harness.claims``: every claim gets a verdict, quickly and torch-free; records decide what they measured."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.claims import spec
from harness.claims.__main__ import main
from harness.claims.check import Context, check
from harness.claims.configs import composer, grid
from harness.claims.verdict import CLASSES, combine, decided, measured, predicted, reading, untestable
from harness.config.hardware import load_catalogue
from harness.errors import ConfigError
from tests.conftest import REPO

pytestmark = pytest.mark.unit
BASE = ["train.max_seq_len=2048", "train.gradient_checkpointing=true"]


@pytest.fixture(scope="module")
def claimset():
    return spec.load()


def _rows(claimset, records, only=None):
    with composer() as compose:
        ctx = Context(claimset, compose, load_catalogue(), records)
        return {c.id: check(ctx, c) for c in claimset.claims if only is None or c.id in only}


def test_every_claim_loads_once_with_its_guide_line(claimset):
    ids = [c.id for c in claimset.claims]
    assert len(ids) == 29 and len(set(ids)) == 29
    for claim in claimset.claims:
        assert claim.guide and claim.text and claim.assumptions, claim.id
        assert all(":" in g for g in claim.guide.split(", ")), claim.id


def test_command_prints_every_claim_with_a_verdict_fast_and_without_torch():
    started = time.perf_counter()
    code = ("import sys, json; from harness.claims.__main__ import main; rc = main(['--json']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - started < 15  # the Done-when says 5 s; a loaded CI box gets slack
    rows = json.loads(out.stdout)
    assert len(rows) == 29
    for row in rows:
        assert row["verdict"] and row["verdict_class"] in CLASSES, row["id"]
        if row["kind"] == "quality":  # no real weights and no judge here: never "holds"
            assert row["verdict_class"] == "untestable", row["id"]
        if row["verdict_class"] == "untestable":
            assert row["verdict"].startswith("not testable here: ") and len(row["verdict"]) > 25, row["id"]


def test_fast_composition_equals_hydras(claimset):
    from harness.plan.__main__ import load_configs

    jobs = [BASE + ["model=mistral", "quant=4bit", "lora.r=16", "train.batch_size=1"],
            BASE + ["model=llama-70b", "dist=fsdp", "dist.processes=4", "lora.r=16", "train.batch_size=2"],
            BASE + ["model=llama", "peft=dora", "quant=none", "lora.r=16", "framework=hf"],
            ["model=tiny-llama", "lora.modules=[q_proj,v_proj]", "data=synthetic", "train.max_seq_len=256"]]
    with composer() as compose:
        fast = [compose(job)[1] for job in jobs]
    assert fast == [plain for _, plain in load_configs(jobs)]


def test_bad_override_is_one_line_naming_it():
    with composer() as compose:
        with pytest.raises(ConfigError, match=r"^lora\.rr=3: .*rr"):
            compose(["lora.rr=3"])
        with pytest.raises(ConfigError, match="train.batch_size=abc"):
            compose(["train.batch_size=abc"])
    assert grid(["lora.r=8,16", "model=mistral"]) == [["lora.r=8", "model=mistral"], ["lora.r=16", "model=mistral"]]


def test_bad_claims_file_names_the_claim_and_key(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - {id: x, guide: '0:1', claim: c, kind: memory, config: model=llama, claimed: {most: 8}}\n")
    with pytest.raises(ConfigError, match=r"claims.yaml: claims\[0\] \(x\)\.claimed: give exactly one of"):
        spec.load(bad)
    bad.write_text("claims:\n  - {id: x, guide: '0:1', claim: c, kind: speed, claimed: {at_most: 1}}\n")
    with pytest.raises(ConfigError, match=r"\(x\)\.kind=speed: must be one of"):
        spec.load(bad)


def test_unknown_only_id_fails_in_one_line(capsys):
    assert main(["--only", "mem-qlora-7b-8gb,nope"]) == 2
    assert capsys.readouterr().err.strip() == "error: --only=nope: no such claim (see claims.yaml)"
    assert main(["--gpu", "rtx-9999"]) == 2


def test_readings_of_a_band_against_a_claim():
    at_most = spec.Claimed("at_most", None, 8.0, "GiB", value=8.0)
    assert reading(at_most, 6.0, 5.0, 7.0) == "holds"
    assert reading(at_most, 7.5, 6.0, 9.0) == "likely holds"
    assert reading(at_most, 8.5, 7.0, 10.0) == "likely does not hold"
    assert reading(at_most, 10.0, 9.0, 11.0) == "does not hold"
    about = spec.Claimed("about", 5.1, 6.9, "GiB", value=6.0)
    assert measured(about, 6.5) and not measured(about, 7.0)
    assert measured(at_most, 80.0, bound="lower") is False  # an OOM at 80 GiB: surely above 8
    assert measured(spec.Claimed("above", 10.0, None, "x", value=10.0), 12.0, bound="lower") is True
    assert combine([decided(True), untestable("why")], ["hf", "axolotl"]).text == "holds (axolotl: not testable here)"
    assert combine([predicted("likely holds"), decided(False)], ["a", "b"]).cls == "does-not-hold"
    assert combine([predicted("holds"), predicted("likely does not hold")], ["a", "b"]).reading == "likely does not hold"


def _gpu_record(cell_id, config, peak_mib=None, status="ok", rate=None, gpu="h100-80gb", **extra):
    return {"cell_id": cell_id, "status": status, "config": config,
            "environment": {"device": "cuda", "memory_mib": 81559},
            "memory": {"train_peak": {"nvml_process_peak_mib": peak_mib}, "after_load": {"cuda_allocated_mib": 4000.0}},
            "train": {"max_batch_shape": [config["train"]["batch_size"], config["train"]["max_seq_len"]],
                      "all_tokens_per_s": rate},
            "efficiency": {"hardware": gpu, "mfu": 0.4}, **extra}


def test_a_gpu_record_of_the_config_decides_a_memory_claim(claimset):
    with composer() as compose:
        plain = compose(claimset.base_overrides + ["model=mistral", "quant=4bit", "lora.r=16", "train.batch_size=1"])[1]
        short = json.loads(json.dumps(plain))
        short["train"]["max_seq_len"] = 1024  # another config: must not match
    rows = _rows(claimset, [_gpu_record("fits", plain, peak_mib=7.5 * 1024), _gpu_record("other", short, 1024.0)],
                 only={"mem-qlora-7b-8gb", "mem-qlora-7b-6gb"})
    assert rows["mem-qlora-7b-8gb"]["verdict"] == "holds"
    assert "7.50 GiB, nvml_process_peak_mib, record fits" in rows["mem-qlora-7b-8gb"]["measured"]
    assert rows["mem-qlora-7b-6gb"]["verdict"] == "does not hold"  # 7.5 is outside 6 ± 15 %


def test_a_ratio_with_an_oom_side_is_a_bound(claimset):
    with composer() as compose:
        full = compose(claimset.base_overrides + ["model=mistral", "peft=full", "quant=none", "train.batch_size=1"])[1]
        lora = compose(claimset.base_overrides + ["model=mistral", "peft=lora", "quant=none", "lora.r=16",
                                                   "train.batch_size=1"])[1]
    rows = _rows(claimset, [_gpu_record("full", full, status="oom"), _gpu_record("lora", lora, peak_mib=17 * 1024)],
                 only={"mem-lora-10-15x"})
    row = rows["mem-lora-10-15x"]
    assert "a ran out of memory: a bound" in row["measured"]
    assert row["verdict_class"] == "predicted"  # >= 4.7x cannot decide 10-15x: the planner's reading stays


def test_time_from_a_record_on_the_claims_gpu_is_measured(claimset):
    with composer() as compose:
        plain = compose(claimset.base_overrides + ["model=llama", "quant=4bit", "lora.r=16", "train.batch_size=4",
                                                    "train.grad_accum=4"])[1]
    # 16,000 examples x 512 tokens in 2 h 40 min = 853 tokens/s
    rows = _rows(claimset, [_gpu_record("t", plain, peak_mib=9000.0, rate=853.0, gpu="rtx-4090")],
                 only={"time-1000-steps-2h40"})
    row = rows["time-1000-steps-2h40"]
    assert row["verdict"] == "holds" and "measured: train.all_tokens_per_s, record t" in row["measured_source"]
    assert "16,000 examples" in row["notes"]


def test_committed_tiny_records_fill_the_cpu_rows(claimset):
    from harness.claims import measured as rec

    folder = REPO / "reports" / "seed-claims-tiny" / "records" / "seed-claims-tiny"
    if not folder.is_dir():
        pytest.skip("reports/seed-claims-tiny not built yet")
    rows = _rows(claimset, rec.load([folder]))
    assert rows["disk-adapter-160mb"]["verdict_class"] == "holds"
    assert "B/param measured on the twin's saved adapter" in rows["disk-adapter-160mb"]["measured"]
    assert "DISAGREE" not in rows["params-0.1-2pct"]["measured"] and "worker counted" in rows["params-0.1-2pct"]["measured"]
    assert rows["mem-qlora-7b-8gb"]["measured"].startswith("twin tiny-mistral on CPU")
    assert rows["mem-qlora-7b-8gb"]["verdict_class"] == "predicted"  # a CPU twin never decides a GPU memory claim
    assert rows["hp-early-stop-3"]["measured"].startswith("record ")
