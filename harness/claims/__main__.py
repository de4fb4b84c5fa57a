"""``python -m harness.claims``: the guides' claims, each with the planner's figure, a measured one and a verdict.

    python -m harness.claims                                     # all 29 claims, predicted from the planner
    python -m harness.claims --records runs/seed-claims-tiny     # with the records of a sweep (matched by config)
    python -m harness.claims --only mem-qlora-7b-8gb,params-0.1-2pct --gpu rtx-3090
    python -m harness.claims --records runs/seed-claims --out reports/claims   # claims.md/.tex/.csv/.parquet/.html

No torch, no GPU: the claims file (harness/claims/claims.yaml), the planner, the hardware catalogue and records.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import ConfigError, HarnessError

SHOWN = ["id", "claimed", "predicted", "measured", "verdict"]


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The command's options."""
    parser = argparse.ArgumentParser(prog="python -m harness.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", action="append", default=[], metavar="SWEEP_DIR",
                        help="sweep folder(s) whose records fill the measured column (repeatable)")
    parser.add_argument("--gpu", default=None, metavar="NAME",
                        help="catalogue GPU for the time and cost claims that name none of their own (default: each claim's)")
    parser.add_argument("--only", default=None, metavar="ID,...", help="only these claim ids")
    parser.add_argument("--claims", type=Path, default=None, metavar="FILE", help="another claims file (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write claims.md, claims.tex, claims.csv, claims.parquet and claims.html there")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser.parse_args(argv)


def _select(claimset: Any, only: Optional[str], gpu: Optional[str], catalogue: Dict[str, Any]) -> List[Any]:
    """The claims asked for, with --gpu put on the parts that name no GPU; unknown ids or GPUs fail in one line."""
    from dataclasses import replace

    from harness.config.hardware import lookup

    claims = claimset.claims
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        known = {c.id for c in claims}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise ConfigError(f"--only={unknown[0]}: no such claim (see {claimset.path.name})")
        claims = [c for c in claims if c.id in wanted]
    if gpu:
        lookup(gpu, catalogue)
        claims = [replace(c, parts=[replace(p, gpu=gpu) if c.kind in ("time", "cost") else p for p in c.parts])
                  for c in claims]
    return claims


def intro(rows: List[Dict[str, Any]], records: List[str], n_records: int) -> List[str]:
    """The lines above the table: what the band and the verdicts mean, and the verdict counts."""
    from collections import Counter

    from harness.claims.planned import error_bands

    bands = error_bands()
    counts = Counter(r["verdict_class"] for r in rows)
    return [
        f"{len(rows)} claims: " + ", ".join(f"{n} {cls}" for cls, n in sorted(counts.items())) + ".",
        f"Predicted: the capacity planner (no GPU), band ± its median error against published figures: "
        f"{bands['single']:.1f} % one GPU, {bands['dist']:.1f} % per GPU of a multi-GPU run (python -m harness.plan.anchors); "
        f"ratios ± {bands['ratio']:.1f} %, its median error on the ratio of two published figures of one source "
        f"({bands['ratio_pairs']:.0f} pairs).",
        "Measured: " + (f"{n_records} records of {', '.join(records)}, matched by config (model shape, method, quantization, "
                        "rank, targets, batch, sequence, checkpointing, framework)" if records else "no records given (--records)")
        + "; a CPU twin's figure is shown but decides only device-independent counts.",
        "Verdicts: holds / does not hold (measured or counted), holds under X (only with X), predicted only: the planner's "
        "band against the claim (holds, likely holds, likely does not hold, does not hold), not testable here (why).",
    ]


def run(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Every selected claim checked, as rows."""
    from harness.claims import measured, spec
    from harness.claims.check import Context, check
    from harness.claims.configs import composer
    from harness.config.hardware import load_catalogue

    claimset = spec.load(args.claims) if args.claims else spec.load()
    catalogue = load_catalogue()
    claims = _select(claimset, args.only, args.gpu, catalogue)
    records = measured.load(Path(f) for f in args.records)
    with composer() as compose:
        ctx = Context(claimset, compose, catalogue, records)
        rows = [check(ctx, c) for c in claims]
    args.n_records = len(records)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: 0 on success, 2 on bad input."""
    from harness import require_installed

    require_installed()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    try:
        rows = run(args)
        lines = intro(rows, args.records, args.n_records)
        if args.out is not None:
            from harness.report.claims import write_claims

            data = None
            if args.records:
                from harness.report.data import load as load_report

                data = load_report([Path(r) for r in args.records])
            for path in write_claims(rows, args.out, title="The guides' claims, checked", intro_lines=lines, data=data):
                print(f"wrote {path}", file=sys.stderr)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    from harness.text import to_markdown

    print("\n".join(lines[:1]))
    print(to_markdown(rows, SHOWN))
    print(f"({len(rows)} claims in {time.perf_counter() - start:.1f} s; assumptions and notes: --out DIR or --json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
