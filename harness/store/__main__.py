"""``python -m harness.store migrate ROOT``: move cells of the old per-sweep layout into the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from harness.errors import HarnessError
from harness.store.layout import cells_root


def main(argv: List[str]) -> int:
    """``python -m harness.store migrate ROOT``."""
    if len(argv) != 3 or argv[1] != "migrate":
        print("usage: python -m harness.store migrate ROOT", file=sys.stderr)
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
