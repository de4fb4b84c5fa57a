"""The configuration room: the typed schema of a cell, one module per config group, and what composes it.

Owns the dataclasses Hydra's ConfigStore type-checks (``schema.HarnessConfig`` and one module per group:
``model``, ``peft`` (peft, lora, quant), ``train`` (framework, train), ``data``, ``eval``, ``generation``
(MT-Bench, AlpacaEval, domain sets, judge), ``run``, ``report`` (report, logger)); the key and name
helpers every check uses (``keys``, ``names``); the seams' name tables (``registry``); transformers' option
names (``hf_names``); the hardware catalogue (``hardware``); and Hydra's composition (``compose``,
``composition``). May import only ``harness.errors``/``harness.files``: every other room reads the config, so
the config reads none of them (a check that needs a room's knowledge goes through ``registry``). Light: no
torch, the parent imports it.
"""
