"""The benchmarks room: the generation benchmarks' input files and their statistics.

Owns MT-Bench questions, reference answers and judge prompts and AlpacaEval references (shipped in
``assets/`` or pointed at by the config), their parent-side checks and digests (``checks``: what a cell's
generation and judge keys depend on) and the statistics both sides report (``stats``: standard errors,
bootstrap intervals, paired deltas). Shared by the worker's evaluators and the parent's judge, so neither has
to import the other. Imports config, data and models only; light.
"""
