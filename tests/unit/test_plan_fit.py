"""The planner answers the headline question: what fits when the cell does not, a local folder's own shape, the
data's real token lengths, any argument order, a grid column per varied key, and one-line unknown options."""

from __future__ import annotations

import json

import pytest

from harness.config.hardware import load_catalogue
from harness.config.model import ModelConfig, shipped_model_group
from harness.config.schema import HarnessConfig
from harness.plan.__main__ import main
from harness.plan.params import count_params
from harness.plan.render import varied_keys
from harness.plan.setting import Cell
from harness.plan.suggest import overrides
from harness.sweep.frontier import predicted_mib

pytestmark = pytest.mark.unit
HEADLINE = ["model=llama", "quant=4bit", "lora.r=16", "train.batch_size=4", "train.max_seq_len=2048"]
SHAREGPT = "/work/shared/samples/sharegpt_dummy_conversation.json"


def _json(capsys, argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["plans"]


def test_the_headline_question_lists_configurations_that_fit_a_24_gb_card(capsys):
    plan = _json(capsys, [*HEADLINE, "--gpu", "rtx-4090"])[0]
    assert not plan["gpus"][0]["fits"]
    options = plan["fit_options"]["rtx-4090"]
    assert options and all(o["device_gib"] <= plan["gpus"][0]["memory_gib"] for o in options)
    assert options[0]["overrides"] == "train.gradient_checkpointing=true"  # one knob, keeps what is trained
    assert options[-1]["knobs"] == ["seq"]  # a shorter sequence changes the training: last
    assert main([*HEADLINE, "--gpu", "rtx-4090"]) == 0
    out = capsys.readouterr().out
    assert "does not fit rtx-4090; nearest configurations that do" in out
    assert "| train.gradient_checkpointing=true |" in out


def test_each_option_is_what_its_overrides_compose_to_and_it_fits(capsys):
    catalogue = load_catalogue(None)
    plan = _json(capsys, [*HEADLINE, "--gpu", "rtx-4090"])[0]
    for option in plan["fit_options"]["rtx-4090"]:
        again = _json(capsys, [*HEADLINE, *option["overrides"].split(), "--gpu", "rtx-4090"])[0]
        assert again["gpus"][0]["fits"], option
        assert again["gpus"][0]["predicted_gib"] == pytest.approx(option["device_gib"])
    assert catalogue["rtx-4090"].memory_gib < 25


def test_a_smaller_micro_batch_keeps_the_global_batch(capsys):
    argv = ["model=llama", "quant=4bit", "train.gradient_checkpointing=true", "train.batch_size=32", "train.grad_accum=2",
            "train.max_seq_len=2048", "--gpu", "rtx-4090"]
    options = _json(capsys, argv)[0]["fit_options"]["rtx-4090"]
    assert options[0]["knobs"] == ["micro_batch"], options
    b, ga = (int(part.split("=")[1]) for part in options[0]["overrides"].split())
    assert b * ga == 32 * 2 and b < 32
    bigger = _json(capsys, [*argv, f"train.batch_size={b * 2}", f"train.grad_accum={ga // 2}"])[0]
    assert not bigger["gpus"][0]["fits"]  # the largest micro-batch that fits, not any


def test_overrides_name_conf_keys():
    cell = Cell.of(HarnessConfig())
    from harness.plan.memory import with_train

    changed = with_train(cell, gradient_checkpointing=True, batch_size=1, grad_accum=4, max_seq_len=128)
    assert overrides(cell, changed) == ("train.gradient_checkpointing=true train.batch_size=1 train.grad_accum=4 "
                                        "train.max_seq_len=128")


def test_the_html_view_lists_the_options_and_each_cells_assumptions(capsys, tmp_path):
    page = tmp_path / "plan.html"
    assert main([*HEADLINE, "--gpu", "rtx-4090", "--html", str(page)]) == 0
    html = page.read_text()
    assert "Does not fit rtx-4090: nearest configurations that do" in html
    assert "<code>train.gradient_checkpointing=true</code>" in html
    grid = tmp_path / "grid.html"
    assert main(["-m", "model=llama", "train.gradient_checkpointing=true,false", "--html", str(grid)]) == 0
    text = grid.read_text()
    assert text.count("gradient checkpointing,") == 1 and text.count("no checkpointing,") == 1


def test_options_and_overrides_in_any_order(capsys):
    assert main(["model=llama", "--gpu", "rtx-4090", "quant=4bit", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plans"][0]
    assert plan["cell"]["quant"] == "4bit" and [g["gpu"] for g in plan["gpus"]] == ["rtx-4090"]


def test_help_prints_usage(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "usage: python -m harness.plan" in capsys.readouterr().out


def test_an_unknown_group_option_lists_the_choices(capsys):
    assert main(["--gpu", "rtx-4090", "model=lama"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model=lama: unknown option") and "\n" not in err
    assert all(name in err for name in ("gemma", "llama-70b", "mistral", "tiny-qwen")) and "did you mean llama" in err


def test_the_grid_has_a_column_for_every_varied_key(capsys):
    assert main(["-m", "model=llama", "train.gradient_checkpointing=true,false", "--gpu", "h100-80gb"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert "train.gradient_checkpointing" in header
    rows = [line for line in out.splitlines() if line.startswith("| llama")]
    assert len(rows) == 2 and rows[0] != rows[1]
    assert varied_keys([["a=1", "b=2"], ["a=1", "b=3"]]) == ["b"]


@pytest.fixture
def local_folder(tmp_path):
    """A tiny llama checkpoint folder: its config.json as transformers writes it."""
    from harness.models.tiny import hf_config

    shape = ModelConfig(name="tiny-llama", num_layers=3, hidden_size=96, num_heads=6, num_kv_heads=2,
                        intermediate_size=192, vocab_size=1000, tie_embeddings=True, max_position_embeddings=512)
    hf_config(shape).save_pretrained(tmp_path)
    return tmp_path, shape


def test_a_local_folder_is_planned_with_its_own_shape(capsys, local_folder):
    folder, shape = local_folder
    plan = _json(capsys, ["model=llama", f"model.hub_id={folder}", "--gpu", "h100-80gb"])[0]
    assert plan["memory"]["params"]["total"] == count_params(shape).total
    assert plan["cell"]["shape_from"] == str(folder / "config.json")
    assert main(["model=llama", f"model.hub_id={folder}", "--gpu", "h100-80gb"]) == 0
    assert f"(shape read from {folder / 'config.json'})" in capsys.readouterr().out


def test_the_frontier_orders_a_local_folder_by_its_own_shape(local_folder):
    import dataclasses

    folder, shape = local_folder
    config = dataclasses.asdict(HarnessConfig())
    group_values = shipped_model_group("llama")
    config["model"].update(group_values)  # the 8B group's numbers, as model=llama composes them
    group = predicted_mib(config, "cuda")
    config["model"]["hub_id"] = str(folder)  # model.hub_id=/path/to/folder: the same numbers, another checkpoint
    own = predicted_mib(config, "cuda")
    assert own is not None and group is not None and own < 2048 < 16384 < group


def test_examples_use_the_tokenizers_lengths_and_that_lengths_throughput(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plan = _json(capsys, ["model=tiny-llama", f"data.path={SHAREGPT}", "--examples", "1000", "--gpu", "h100-80gb"])[0]
    data = plan["dataset"]
    assert "measured with the tiny-llama tokenizer" in data["for"] and "p50 115" in data["for"]
    assert 100 < data["tokens_per_example"] < 256
    assert f"at {int(data['tokens_per_example'])} tokens per sequence" in plan["gpus"][0]["throughput_source"]


def test_examples_fall_back_to_characters_in_one_line_without_the_tokenizer(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = _json(capsys, ["model=llama", f"data.path={SHAREGPT}", "--examples", "1000", "--gpu", "h100-80gb"])[0]["dataset"]
    assert "the llama tokenizer is not available here" in data["for"] and "4 characters per token" in data["for"]


def test_a_grid_measures_the_lengths_once_per_model_and_data(capsys, monkeypatch, tmp_path):
    from harness.plan import lengths

    calls = []
    monkeypatch.setattr(lengths, "_MEASURED", {})
    monkeypatch.setattr(lengths, "_measure_in_child", lambda overrides, model: calls.append(model.name) or (99.0, "m"))
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}))
    plans = _json(capsys, ["-m", "model=tiny-llama,tiny-qwen", "lora.r=8,16", f"data.path={path}", "--examples", "10"])
    assert sorted(calls) == ["tiny-llama", "tiny-qwen"]
    assert {p["dataset"]["tokens_per_example"] for p in plans} == {99.0}
