"""The measurement room: what a training run cost and how it ended.

Owns the meters (``meters``: host/CUDA memory, step timing, tokens), NVML sampling (``nvml``), efficiency,
energy and money (``efficiency``), the per-step log line (``steplog``), divergence (``divergence``), why a
process died (``oom``), the memory cap (``memcap``: the parent's watchdog and the worker's CUDA fraction) and
the fairness figures frameworks must agree on (``fairness``). Used by the worker, every backend, the
framework runners and the parent; imports config and plan only. No torch at module import.
"""
