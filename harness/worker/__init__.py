"""The worker room: one cell in a fresh process (``python -m harness.worker CELL_DIR``).

Owns the phases of a cell (``phases``: open, data, train, evaluate, record) and how a failure is classified
(``outcome``: OOM, divergence, one-line errors). Imports the seams it drives (backends and evaluators through
the registry), measurement, data and the store; never the parent's rooms (sweep, judge, report).
"""
