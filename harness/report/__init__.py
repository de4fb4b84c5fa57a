"""Reports: records -> one tidy table and one wide table -> pivots, Markdown, LaTeX, CSV/Parquet, HTML.

Parent side, no torch. ``data`` is the one place that reads the store (one or many sweep
folders, each cell once); ``metrics`` says what each column means (unit, direction);
``pivot`` and ``publish`` make the tables; ``html`` + ``plots`` the offline page;
``python -m harness.report`` runs it all, and so does the end of every sweep.
"""
