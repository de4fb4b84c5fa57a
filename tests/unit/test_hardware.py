"""The hardware catalogue loads torch-free, covers the GPUs people plan with, and matches device names."""

from __future__ import annotations

import pytest

from harness.config.hardware import load_catalogue, lookup, match_device
from harness.errors import ConfigError

pytestmark = pytest.mark.unit
REQUIRED = ["rtx-3060-12gb", "rtx-3090", "rtx-4090", "l4", "a10g", "l40s", "a100-40gb", "a100-80gb", "h100-80gb", "h200"]


def test_catalogue_has_the_required_gpus_with_every_figure():
    catalogue = load_catalogue()
    for name in REQUIRED:
        entry = catalogue[name]
        assert entry.kind == "gpu" and entry.memory_gib > 0 and entry.bf16_tflops > 0
        assert entry.price_usd_per_h is not None and entry.tdp_w is not None and entry.match
    assert catalogue["h100-80gb"].bf16_tflops == pytest.approx(989.4)


@pytest.mark.parametrize(
    "device,memory_gib,expected",
    [
        ("NVIDIA H100 80GB HBM3", 79.1, "h100-80gb"),
        ("NVIDIA H100 PCIe", 79.1, "h100-pcie"),
        ("NVIDIA A100-SXM4-40GB", 39.4, "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", 79.2, "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", None, "a100-80gb"),
        ("NVIDIA L4", 22.0, "l4"),
        ("NVIDIA L40S", 44.4, "l40s"),
        ("NVIDIA A10G", 22.0, "a10g"),
        ("NVIDIA GeForce RTX 3060", 11.7, "rtx-3060-12gb"),
        ("NVIDIA GeForce RTX 3090", 23.6, "rtx-3090"),
        ("NVIDIA GeForce RTX 4090", 23.5, "rtx-4090"),
        ("NVIDIA H200", 139.8, "h200"),
    ],
)
def test_torch_device_names_match_their_entry(device, memory_gib, expected):
    assert match_device(device, load_catalogue(), memory_gib).name == expected


def test_unknown_device_matches_nothing():
    assert match_device("Tesla K80", load_catalogue()) is None
    assert match_device(None, load_catalogue()) is None


def test_user_entries_and_one_line_errors(tmp_path):
    (tmp_path / "my-cpu.yaml").write_text("kind: cpu\nmemory_gib: 64\nbf16_tflops: 2.5\nprice_usd_per_h: null\ntdp_w: 125\nmatch: ['xeon']\n")
    catalogue = load_catalogue(tmp_path)
    assert match_device("Intel(R) Xeon(R) Processor", catalogue).name == "my-cpu"
    with pytest.raises(ConfigError, match=r"--gpu=h1000: not in the hardware catalogue"):
        lookup("h1000", catalogue)
    (tmp_path / "bad.yaml").write_text("memory_gib: -1\nbf16_tflops: 10\n")
    with pytest.raises(ConfigError) as info:
        load_catalogue(tmp_path)
    assert str(info.value) == "bad.yaml: memory_gib=-1: must be a positive number"
    (tmp_path / "bad.yaml").write_text("memory_gib: 8\nbf16_tflops: 10\nprise: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: prise=1: unknown key"):
        load_catalogue(tmp_path)
