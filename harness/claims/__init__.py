"""The guides' claims, checked: ``python -m harness.claims`` turns what fine-tuning guides promise into verdicts.

Modules: ``claims.yaml`` (the 29 claims of ../shared/CLAIMS.md as data), ``spec`` (loading and validating it),
``configs`` (a claim's overrides composed into harness configs, as a sweep composes them), ``planned`` (the capacity
planner's figures for a config: memory with its stated error band, time, cost, exact counts), ``measured`` (records
matched to a config by its settings, and the figure they measured), ``verdict`` (a figure against a claimed value),
``check`` (one claim to one row), ``__main__`` (the command line). Output files come from the report room
(``harness.report.claims``). No torch anywhere: it reads configs, the planner and records.
"""
