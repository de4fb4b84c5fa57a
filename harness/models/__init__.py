"""The models room: where a cell's base model comes from, without ever reaching the hub in the parent unasked.

Owns the tiny random-initialised models of the real architectures (``tiny``: built once, cached, with a tiny
tokenizer padded to the model's vocabulary), real-size architectures with random weights (``random_weights``:
``model.weights=random``, no download) and the parent's hub checks (``hub``: is a hub model or dataset
reachable or cached, resolved to its commit). Imports config and data only; transformers only inside the
functions that build a model, which the worker calls.
"""
