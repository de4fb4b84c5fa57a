"""``python -m harness.store migrate ROOT``: move cells of the old per-sweep layout into the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from harness.errors import HarnessError
from harness.store.layout import cells_root

USAGE = "usage: python -m harness.store migrate ROOT"
HELP = (
    "Moves each cell folder of the old per-sweep layout (ROOT/<sweep>/<cell>/) into the cell store\n"
    "ROOT/cells/<new id> and leaves a link and a manifest in the sweep folder. Nothing is deleted: a cell\n"
    "whose new id is already stored goes to ROOT/cells/.duplicates/ (harness/store/migrate.py)."
)


def main(argv: List[str]) -> int:
    """``python -m harness.store migrate ROOT``; ``--help`` prints the usage (exit 0), anything else it on stderr (2)."""
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(f"{USAGE}\n\n{HELP}")
        return 0
    if len(argv) != 3 or argv[1] != "migrate":
        print(USAGE, file=sys.stderr)
        return 2
    from harness.store.migrate import migrate

    try:
        moved = migrate(Path(argv[2]))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"migrated {moved} cell folder(s) into {cells_root(Path(argv[2]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
