"""The store room: what a cell is and where its files live.

Owns cell identity (ids, data/model/environment fingerprints, evaluation keys), the store's layout (cells,
sweep views, manifests, per-cell locks), records, the parent-to-worker launch block, ``progress.json``,
migration of the old layout, and the versions of the Python environments cells run in. Imports config, data,
models and benchmarks (whose fingerprints decide an id); never torch at module import: the parent imports it.

    python -m harness.store migrate ROOT
"""
