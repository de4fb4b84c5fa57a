"""``python -m harness.evaluate SWEEP_DIR eval=[...]``: score stored cells without training.

The entry point only; the work is ``harness.sweep.evaluate``.
"""
