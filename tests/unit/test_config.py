"""Every shipped config composes and validates; bad values fail in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from harness.config.compose import register
from harness.errors import ConfigError
from harness.sweep.validate import validate

pytestmark = pytest.mark.unit
CONF = Path(__file__).resolve().parents[2] / "conf"
NOT_GROUPS = {"hydra"}
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_GROUPS)


def _compose(overrides):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _options(group: str):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_shipped_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"] if group != "eval" else [f"eval=[{option}]"]
    if group == "peft" and option == "full":
        overrides.append("quant=none")
    if group == "eval" and option == "domain":  # the one block without a default: your own file
        overrides.append(f"eval.domain.path={CONF.parent / 'tests/fixtures/eval_sets/domain_qa.jsonl'}")
    if group == "eval" and option in ("mt_bench", "alpaca_eval"):  # a local judge needs no API key variable
        overrides.append("eval.judge.api_key_env=null")
    if group == "eval" and option == "alpaca_eval":  # offline: a local reference set instead of the hub's
        overrides.append(f"eval.alpaca_eval.references={CONF.parent / 'tests/fixtures/eval_sets/alpaca_eval_references.json'}")
    typed, plain = validate(_compose(overrides))
    assert plain["model"]["name"] == typed.model.name


def test_users_own_words_compose_for_real_models():
    for model in ("llama", "mistral", "gemma", "qwen", "phi"):
        typed, _ = validate(_compose([f"model={model}", "lora.r=16"]))
        assert typed.model.hub_id and not typed.model.tiny


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["lora.r=0"], "lora.r=0: must be a positive integer"),
        (["train.lr=-1"], "train.lr=-1.0: must be > 0"),
        (["quant=4bit", "peft=full"], "quant=4bit: quantized weights are frozen"),
        (["model=tiny-phi", "lora.modules=[q_proj]"], "lora.modules=q_proj: phi3 has no module q_proj"),
        (["data.path=/no/such/file.jsonl"], "data.path=/no/such/file.jsonl: no such file"),
        (["framework.backend=hff"], "framework.backend=hff: unknown (did you mean hf?)"),
        (["train.batch_size=0"], "train.batch_size=0"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(overrides, needle):
    with pytest.raises(ConfigError) as info:
        validate(_compose(overrides))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_phi_presets_use_fused_modules():
    typed, _ = validate(_compose(["model=phi", "lora.target=all-linear"]))
    from harness.config.peft import lora_target_modules

    assert lora_target_modules("phi3", typed.lora) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert lora_target_modules("llama", typed.lora)[:4] == ["q_proj", "k_proj", "v_proj", "o_proj"]


SWEEPS = sorted(p.stem for p in (CONF.parent / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("name", SWEEPS)
def test_every_named_sweep_validates_every_cell(name):
    """Every job the sweeper would launch: the grid of hydra.sweeper.params, or each of hydra.sweeper.cells with it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.harness_sweeper.harness_sweeper import expand, parse_cells

    sweeper = _compose_named(name, []).hydra.sweeper
    parser = OverridesParser.create()
    params = [f"{key}={value}" for key, value in (sweeper.params or {}).items()]
    jobs = expand(parser.parse_overrides(params), parse_cells(parser, list(sweeper.cells or [])))
    assert jobs and len({tuple(job) for job in jobs}) == len(jobs)
    for job in jobs:
        typed, _ = validate(_compose_named(name, job))
        assert typed.run.sweep == name


def _compose_named(name, overrides):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=True)


def test_cross_field_checks_run_on_sweeper_composed_configs():
    # The sweeper validates configs that still carry Hydra's node; the root schema must survive.
    with pytest.raises(ConfigError, match="quant=4bit: quantized weights are frozen"):
        validate(_compose_named("config", ["quant=4bit", "peft=full"]))
