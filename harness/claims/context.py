"""What every part check reads (``Context``) and returns (``Result``), and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from harness.claims import measured as rec
from harness.claims.planned import Figure
from harness.claims.spec import ClaimSet, Part
from harness.claims.verdict import Verdict, predicted, untestable

Compose = Callable[[List[str]], Tuple[Any, Dict[str, Any]]]
SEED = "sweeps/seed-claims.yaml"
"""The named sweep whose GPU records a predicted-only row is waiting for."""


@dataclass
class Context:
    """What every check reads: the claims file, a composer, the catalogue and the loaded records."""

    claims: ClaimSet
    compose: Compose
    catalogue: Dict[str, Any]
    records: List[Dict[str, Any]] = field(default_factory=list)

    def config(self, overrides: List[str]) -> Tuple[Any, Dict[str, Any]]:
        """A claim config: the shared base overrides, then the claim's own."""
        return self.compose(self.claims.base_overrides + list(overrides))

    def twin(self, overrides: List[str]) -> Optional[Tuple[Any, Dict[str, Any]]]:
        """The CPU twin of a claim config (tiny model of the family, short rows), or None when it has none."""
        if not any(rec.device_of(r) == "cpu" for r in self.records):
            return None  # nothing a twin could be matched to: skip composing it
        out, swapped = [], False
        for o in self.claims.base_overrides + list(overrides):
            key, _, value = o.partition("=")
            if key == "model":
                if value not in self.claims.twin_models:
                    return None
                o, swapped = f"model={self.claims.twin_models[value]}", True
            elif key.startswith("model."):
                return None  # a shape override has no twin
            out.append(o)
        return self.compose(out + self.claims.twin_overrides) if swapped else None

    def found(self, plain: Dict[str, Any], device: str = "cuda") -> List[Dict[str, Any]]:
        """Records of ``plain``'s config on ``device``."""
        return [r for r in rec.matching(self.records, plain) if rec.device_of(r) == device]


@dataclass
class Result:
    """One part checked: the figures shown and its verdict."""

    label: str
    configuration: str
    predicted: str = "—"
    measured: str = ""
    verdict: Verdict = field(default_factory=lambda: untestable(""))
    notes: List[str] = field(default_factory=list)
    predicted_fig: Optional[Figure] = None
    measured_value: Optional[float] = None
    measured_source: str = ""


def _pct(a: float, b: float) -> str:
    return f"{(a - b) / b * 100:+.1f} %" if b else "n/a"




def pct(a: float, b: float) -> str:
    """Signed difference of a from b in %."""
    return f"{(a - b) / b * 100:+.1f} %" if b else "n/a"


def alternatives(part: Part, attempt: Callable[[List[str]], Optional[Verdict]]) -> Optional[Verdict]:
    """The first of the part's fixed alternatives under which ``attempt`` reads as holding (or likely holding)."""
    for alt in part.alternatives:
        v = attempt(part.config + [alt])
        if v is not None and v.reading in ("holds", "likely holds"):
            return predicted(v.reading, alt)
    return None
