"""Plain-text tables: the Markdown pipe tables the summary, the console and the planner print."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List


def format_cell(value: Any) -> str:
    """A table cell: "" for None, 4 significant digits for a float under 10^4, whole numbers above."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def to_markdown(rows: Iterable[Dict[str, Any]], columns: List[str]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)
