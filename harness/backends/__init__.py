"""Training backends: one module per framework, each readable top to bottom.

A backend loads the model (with quantization and adapter), trains it while feeding the
step meter, and hands back a ``ModelView`` for the evaluators. The contract is
``harness.backends.base.Backend``; register new ones in ``harness.config.registry.BACKENDS``.
"""
