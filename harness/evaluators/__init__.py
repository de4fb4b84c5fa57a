"""Evaluators: score a trained model. Each sees only a ``ModelView`` and returns metric rows.

Register new ones in ``harness.config.registry.EVALUATORS``; the contract is
``harness.evaluators.base.Evaluator``.
"""
