"""The parent's hub preflight: tiny and local models pass; an unreachable hub fails in one line."""

from __future__ import annotations

import pytest

from harness.config.model import ModelConfig, shipped_model_group
from harness.models import hub

pytestmark = pytest.mark.unit


def test_tiny_and_local_models_need_no_hub(tmp_path):
    assert hub.hub_problem(ModelConfig()) is None
    assert hub.hub_problem(ModelConfig(name="mine", tiny=False, hub_id=str(tmp_path))) is None


def test_offline_uncached_hub_model_fails_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "in_local_cache", lambda model: False)
    hub.hub_reachable.cache_clear()
    problem = hub.hub_problem(ModelConfig(**shipped_model_group("llama")))
    assert problem.startswith("model=llama: meta-llama/Llama-3.1-8B@main needs the Hugging Face hub")
    assert "\n" not in problem


def test_cached_model_passes_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "in_local_cache", lambda model: True)
    assert hub.hub_problem(ModelConfig(**shipped_model_group("llama"))) is None
