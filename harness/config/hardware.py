"""The hardware catalogue: memory, dense BF16 peak, hourly price, TDP and interconnect bandwidth of the devices people
plan with.

One YAML file per device under the repository's ``hardware/`` (user-editable; the file name is
the entry name). Read with PyYAML only, so the planner and the sweep parent can use it without
torch. The folder is deliberately outside ``conf/`` (Hydra's config search path): a price is not
part of a cell's identity, and ``python -m harness --help`` must not offer it as a config group.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from harness.errors import ConfigError

CATALOGUE_DIR = Path(__file__).resolve().parents[2] / "hardware"
CATALOGUE_ENV = "HARNESS_HARDWARE_DIR"
"""Environment variable naming another catalogue folder (the planner's ``--hardware-dir`` wins)."""
KINDS = ("gpu", "cpu")
LINKS = ("nvlink_gb_per_s", "pcie_gb_per_s", "network_gb_per_s")
"""Interconnect keys: peak bandwidth per GPU and per direction, GB/s (1 GB = 1e9 bytes); null when the device has
none. A datasheet's "600 GB/s NVLink" is both directions together: 300 GB/s each way."""


@dataclass(frozen=True)
class Hardware:
    """One catalogue entry."""

    name: str
    """File stem, e.g. ``h100-80gb``; what the planner's table and records call the device."""
    label: str
    """Human name, e.g. ``NVIDIA H100 80GB SXM``."""
    kind: str
    """gpu or cpu."""
    memory_gib: float
    """Total device memory as the driver reports it (nvidia-smi memory.total), GiB."""
    bf16_tflops: float
    """Dense (no sparsity) BF16 peak, TFLOP/s; the denominator of MFU."""
    price_usd_per_h: Optional[float]
    """Typical on-demand price per device-hour in USD; None when unknown."""
    tdp_w: Optional[float]
    """Thermal design power (board power limit), W."""
    match: Tuple[str, ...]
    """Regular expressions searched in the lower-cased, normalised device name."""
    nvlink_gb_per_s: Optional[float] = None
    """NVLink between the GPUs of one node (all-to-all through NVSwitch), GB/s per direction; None when the device
    has none, or only a bridge that pairs GPUs two by two (a ring over more crosses PCIe)."""
    pcie_gb_per_s: Optional[float] = None
    """Host link (PCIe x16 of the device's generation), GB/s per direction: between GPUs without NVLink, and to the
    CPU for offloading."""
    network_gb_per_s: Optional[float] = None
    """Inter-node network per GPU (one NIC per GPU, as in NVIDIA's DGX/HGX nodes), GB/s per direction; None: not
    known for the device (the planner then states its assumption)."""


def normalise(device_name: str) -> str:
    """Lower-case a device name and turn ``-``/``_`` into spaces (``A100-SXM4-80GB`` -> ``a100 sxm4 80gb``)."""
    return re.sub(r"\s+", " ", re.sub(r"[-_]", " ", device_name.lower())).strip()


def _entry(path: Path, raw: Any) -> Hardware:
    """Validate one YAML file into a Hardware entry; errors name the file and the key."""

    def need(ok: bool, key: str, value: Any, reason: str) -> None:
        if not ok:
            raise ConfigError(f"{path.name}: {key}={value}: {reason}")

    need(isinstance(raw, dict), "file", type(raw).__name__, "must be a mapping of keys to values")
    known = {"label", "kind", "memory_gib", "bf16_tflops", "price_usd_per_h", "tdp_w", "match", *LINKS}
    unknown = sorted(set(raw) - known)
    if unknown:
        need(False, unknown[0], raw[unknown[0]], f"unknown key (known: {', '.join(sorted(known))})")
    kind = raw.get("kind", "gpu")
    need(kind in KINDS, "kind", kind, f"must be one of {', '.join(KINDS)}")
    for key in ("memory_gib", "bf16_tflops"):
        value = raw.get(key)
        need(isinstance(value, (int, float)) and value > 0, key, value, "must be a positive number")
    for key in ("price_usd_per_h", "tdp_w"):
        value = raw.get(key)
        need(value is None or (isinstance(value, (int, float)) and value >= 0), key, value, "must be a number >= 0 or null")
    for key in LINKS:
        value = raw.get(key)
        need(value is None or (isinstance(value, (int, float)) and value > 0), key, value, "must be a number > 0 or null")
    patterns = raw.get("match") or []
    need(isinstance(patterns, list) and all(isinstance(p, str) for p in patterns), "match", patterns, "must be a list of regexes")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            need(False, "match", pattern, f"not a regular expression ({exc})")
    return Hardware(
        name=path.stem,
        label=str(raw.get("label", path.stem)),
        kind=kind,
        memory_gib=float(raw["memory_gib"]),
        bf16_tflops=float(raw["bf16_tflops"]),
        price_usd_per_h=None if raw.get("price_usd_per_h") is None else float(raw["price_usd_per_h"]),
        tdp_w=None if raw.get("tdp_w") is None else float(raw["tdp_w"]),
        match=tuple(patterns),
        **{key: None if raw.get(key) is None else float(raw[key]) for key in LINKS},
    )


def catalogue_dir(folder: Optional[Path] = None) -> Path:
    """The catalogue folder: ``folder``, else $HARNESS_HARDWARE_DIR, else the repo's hardware/."""
    if folder is not None:
        return Path(folder).expanduser()
    env = os.environ.get(CATALOGUE_ENV)
    return Path(env).expanduser() if env else CATALOGUE_DIR


def load_catalogue(folder: Optional[Path] = None) -> Dict[str, Hardware]:
    """Every entry of the catalogue, by name, sorted by memory then peak (smallest first)."""
    import yaml

    root = catalogue_dir(folder)
    if not root.is_dir():
        raise ConfigError(f"hardware catalogue {root}: no such folder")
    entries = []
    for path in sorted(root.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
        entries.append(_entry(path, raw))
    entries.sort(key=lambda e: (e.memory_gib, e.bf16_tflops, e.name))
    return {entry.name: entry for entry in entries}


def match_device(
    device_name: Optional[str], catalogue: Dict[str, Hardware], memory_gib: Optional[float] = None
) -> Optional[Hardware]:
    """The entry a device belongs to, by name (regex) and, when several match, by closest memory.

    ``NVIDIA H100 80GB HBM3`` -> h100-80gb; ``NVIDIA A100-SXM4-40GB`` -> a100-40gb (both A100
    entries match the name; the reported memory decides). None when nothing matches.
    """
    if not device_name:
        return None
    name = normalise(device_name)
    hits = []
    for entry in catalogue.values():
        lengths = [len(p) for p in entry.match if re.search(p, name)]
        if lengths:
            hits.append((entry, max(lengths)))
    if not hits:
        return None
    if len(hits) > 1 and memory_gib is None:
        # no memory figure: a size written in the name ("40gb") decides, else the longest pattern
        size = re.search(r"(\d+)\s?gb", name)
        if size:
            memory_gib = float(size.group(1))
    if len(hits) > 1 and memory_gib is not None:
        return min(hits, key=lambda hit: (abs(hit[0].memory_gib - memory_gib), -hit[1]))[0]
    return max(hits, key=lambda hit: hit[1])[0]


def lookup(name: str, catalogue: Dict[str, Hardware], key: str = "--gpu") -> Hardware:
    """The entry called ``name``; a one-line ConfigError naming ``key`` and the choices otherwise."""
    if name in catalogue:
        return catalogue[name]
    raise ConfigError(f"{key}={name}: not in the hardware catalogue (known: {', '.join(catalogue)})")
