"""``python -m harness.evaluate SWEEP_DIR eval=[...]``: score stored cells without training (``harness.sweep.evaluate``)."""

import sys

from harness.sweep import evaluate

if __name__ == "__main__":
    if "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:  # before parse(): it reads a leading "-" as a mistake
        print(f"{evaluate.USAGE}\n\n{evaluate.__doc__.strip()}")
        sys.exit(0)
    sys.exit(evaluate.main())
