"""LLM-judge benchmarks, parent side: no torch is imported under this package.

Generation happens in the worker (``harness.evaluators.mt_bench`` / ``alpaca_eval`` write
answers.jsonl into the cell's evaluation folder); judging happens here, after the cells,
and again on demand (``python -m harness.judge SWEEP_DIR``):

- ``client``: any OpenAI-compatible server; concurrency, retries, spending cap, cost, and
  an on-disk cache of one atomic file per call.
- ``mt_bench``, ``alpaca_eval`` (+ ``glm``): each benchmark's judge prompts, verdict
  parsing and scores, following FastChat's ``llm_judge`` and alpaca_eval.
- ``stats``: bootstrap intervals and paired deltas against the base model.
- ``run``: judges the cells of a sweep and writes one result per cell and judge setting.
"""
