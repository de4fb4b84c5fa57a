"""Load ``claims.yaml``: each claim validated into a ``Claim`` of one or more ``Part``\\ s, errors in one line."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from harness.errors import ConfigError

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"
KINDS = ("memory", "ratio", "time", "cost", "disk", "params", "quality", "setting")
RELATIONS = ("at_most", "above", "about", "between", "text")
FORMS = ("ratio", "reduction_pct", "delta", "change_pct")
QUANTITIES = ("peak", "weights", "overhead", "tokens_per_s", "mmlu", "mmlu_vs_base", "mt_bench", "alpaca_eval",
              "rank_curve")


@dataclass(frozen=True)
class Claimed:
    """What a claim says, as a range: ``at_most`` X, ``above`` X, ``about`` X (+- about_pct %), ``between`` lo, hi."""

    relation: str
    low: Optional[float]
    high: Optional[float]
    unit: str
    value: Optional[float] = None
    """The figure as the guide gives it (the midpoint for ``between``)."""
    text: str = ""
    """For a claim with no figure (``text``): what it says."""

    def contains(self, x: float) -> bool:
        """Whether a value satisfies the claim."""
        return (self.low is None or x >= self.low) and (self.high is None or x <= self.high)

    def describe(self) -> str:
        """``<= 8 GiB``, ``~6 GiB (5.1–6.9)``, ``10–15 x``, ``> -2 points``."""
        u = f" {self.unit}" if self.unit not in ("%",) else " %"
        if self.relation == "text":
            return self.text
        if self.relation == "at_most":
            return f"≤ {self.value:g}{u}"
        if self.relation == "above":
            return f"> {self.value:g}{u}"
        if self.relation == "between":
            return f"{self.low:g}–{self.high:g}{u}"
        return f"~{self.value:g}{u} ({_short(self.low)}–{_short(self.high)})"


def _short(x: Optional[float]) -> str:
    return f"{x:.3g}" if x is not None else "?"


@dataclass(frozen=True)
class Part:
    """One figure of a claim: its config (or the two compared), the GPU it is about and what it claims."""

    label: str
    claimed: Claimed
    config: List[str] = field(default_factory=list)
    """Overrides of the one config (memory, time, cost, disk, params, setting); may hold comma lists (a grid)."""
    compare: Optional[Tuple[List[str], List[str]]] = None
    """(a, b) overrides of a two-config claim: ratio a/b, reduction 1 - b/a, delta b - a."""
    gpu: Optional[str] = None
    alternatives: List[str] = field(default_factory=list)
    """Overrides tried in order when the part does not hold under the stated assumptions."""
    untestable: str = ""
    """Why this part cannot be checked by the harness at all (e.g. a framework it does not run)."""


@dataclass(frozen=True)
class Claim:
    """One guide claim, its parts and the assumptions every verdict is read under."""

    id: str
    guide: str
    text: str
    kind: str
    parts: List[Part]
    quantity: str = "peak"
    form: str = "ratio"
    assumptions: List[str] = field(default_factory=list)
    note: str = ""
    examples: Optional[int] = None
    steps: Optional[int] = None
    hours: Optional[float] = None
    usd_per_kwh: Optional[float] = None
    measurable: bool = True
    """False where no record can be of this config (planner only: no such model group, or a multi-GPU run)."""


@dataclass(frozen=True)
class ClaimSet:
    """The whole file: the claims and what every claim shares."""

    claims: List[Claim]
    about_pct: float
    base_overrides: List[str]
    base_assumptions: List[str]
    tokens_per_example: int
    tokens_per_example_why: str
    twin_models: Dict[str, str]
    twin_overrides: List[str]
    path: Path


def _claimed(raw: Any, where: str, about_pct: float) -> Claimed:
    """A ``claimed:`` mapping to a Claimed range."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.claimed: must be a mapping like {{at_most: 8, unit: GiB}}")
    relations = [r for r in RELATIONS if r in raw]
    if len(relations) != 1:
        raise ConfigError(f"{where}.claimed: give exactly one of {', '.join(RELATIONS)}")
    rel, unit = relations[0], str(raw.get("unit", ""))
    value = raw[rel]
    if rel == "text":
        return Claimed("text", None, None, unit, text=str(value))
    if rel == "between":
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
            raise ConfigError(f"{where}.claimed.between={value}: must be [low, high]")
        return Claimed(rel, float(value[0]), float(value[1]), unit, value=(value[0] + value[1]) / 2)
    if not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.claimed.{rel}={value}: must be a number")
    x = float(value)
    if rel == "at_most":
        return Claimed(rel, None, x, unit, value=x)
    if rel == "above":
        return Claimed(rel, x, None, unit, value=x)
    spread = abs(x) * about_pct / 100
    return Claimed(rel, x - spread, x + spread, unit, value=x)


def _overrides(raw: Any, where: str) -> List[str]:
    """A config string (space separated, shell quoting) or list to override strings."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return [str(o) for o in raw]
    try:
        return shlex.split(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _part(raw: Dict[str, Any], claim: Dict[str, Any], where: str, about_pct: float) -> Part:
    """One part, inheriting the claim's config, gpu, claimed and alternatives where the part leaves them out."""
    merged = {**{k: claim[k] for k in ("config", "compare", "gpu", "claimed", "alternatives") if k in claim}, **raw}
    compare = merged.get("compare")
    if compare is not None:
        if not (isinstance(compare, dict) and set(compare) == {"a", "b"}):
            raise ConfigError(f"{where}.compare: must be {{a: overrides, b: overrides}}")
        compare = (_overrides(compare["a"], f"{where}.compare.a"), _overrides(compare["b"], f"{where}.compare.b"))
    if "claimed" not in merged:
        raise ConfigError(f"{where}: no claimed value")
    return Part(label=str(raw.get("label", "")), claimed=_claimed(merged["claimed"], where, about_pct),
                config=_overrides(merged.get("config"), f"{where}.config"), compare=compare,
                gpu=merged.get("gpu"), alternatives=[str(a) for a in merged.get("alternatives") or []],
                untestable=str(raw.get("untestable", "")))


KNOWN = {"id", "guide", "claim", "kind", "config", "compare", "quantity", "form", "claimed", "assumptions",
         "alternatives", "gpu", "parts", "note", "examples", "steps", "hours", "usd_per_kwh", "measurable"}


def _claim(raw: Any, index: int, about_pct: float) -> Claim:
    """One entry of ``claims:``."""
    where = f"claims[{index}]"
    if not isinstance(raw, dict) or "id" not in raw:
        raise ConfigError(f"{where}: must be a mapping with an id")
    where = f"claims[{index}] ({raw['id']})"
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(KNOWN))})")
    for key, allowed in (("kind", KINDS), ("quantity", QUANTITIES), ("form", FORMS)):
        if key in raw and raw[key] not in allowed:
            raise ConfigError(f"{where}.{key}={raw[key]}: must be one of {', '.join(allowed)}")
    if "kind" not in raw or "guide" not in raw or "claim" not in raw:
        raise ConfigError(f"{where}: needs kind, guide and claim")
    parts = [_part(p, raw, f"{where}.parts[{i}]", about_pct) for i, p in enumerate(raw.get("parts") or [])]
    if not parts:
        parts = [_part({}, raw, where, about_pct)]
    return Claim(id=str(raw["id"]), guide=str(raw["guide"]), text=str(raw["claim"]), kind=raw["kind"], parts=parts,
                 quantity=raw.get("quantity", "peak"), form=raw.get("form", "ratio"),
                 assumptions=[str(a) for a in raw.get("assumptions") or []], note=str(raw.get("note", "")),
                 examples=raw.get("examples"), steps=raw.get("steps"), hours=raw.get("hours"),
                 usd_per_kwh=raw.get("usd_per_kwh"), measurable=bool(raw.get("measurable", True)))


def load(path: Path = CLAIMS_FILE) -> ClaimSet:
    """Every claim of ``path``, validated; a problem raises ConfigError naming the file and the claim."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    try:
        about = float(raw.get("about_pct", 15))
        claims = [_claim(c, i, about) for i, c in enumerate(raw.get("claims") or [])]
    except ConfigError as exc:
        raise ConfigError(f"{Path(path).name}: {exc}") from None
    ids = [c.id for c in claims]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{Path(path).name}: claim id {dupes[0]} appears twice")
    base, twin = raw.get("base") or {}, raw.get("twin") or {}
    return ClaimSet(claims=claims, about_pct=about, base_overrides=_overrides(base.get("overrides"), "base.overrides"),
                    base_assumptions=[str(a) for a in base.get("assumptions") or []],
                    tokens_per_example=int(raw.get("tokens_per_example", 512)),
                    tokens_per_example_why=str(raw.get("tokens_per_example_why", "")),
                    twin_models=dict(twin.get("models") or {}), twin_overrides=_overrides(twin.get("overrides"), "twin"),
                    path=Path(path))
