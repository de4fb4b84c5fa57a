"""``python -m harness.evaluate SWEEP_DIR eval=[...]``: score stored cells without training (``harness.sweep.evaluate``)."""

import sys

from harness.sweep.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
