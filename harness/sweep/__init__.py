"""The sweep room: the light Hydra parent that runs a grid of cells.

Owns the Hydra task (``job``), command-line and grid-point validation (``preflight``, ``validate``), a
cell's plan and its worker process (``cell``), several cells at once (``launch``), the OOM frontier
(``frontier``), the console status line (``status``), evaluation of stored cells (``evaluate``) and the
end-of-run callback that judges, summarises and reports (``callbacks``). The top room: it may import every
room below it, never a worker-side room (backends, evaluators, frameworks, worker: it starts them as
processes), and never torch at module import.
"""
