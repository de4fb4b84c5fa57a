"""An import-linter contract type for "never at module import": the parent imports these rooms, torch must not come
with them.

import-linter's own ``forbidden`` contract follows every import statement, including the ones inside a function
body -- and the parent's rooms do reach torch that way on purpose (``harness.models.tiny`` builds a tiny model
with transformers when a cell asks for one; the worker, never the parent, calls it). What the parent pays for is
what runs when a module is imported: this contract keeps only those edges -- import statements at module level,
in a class body or under a module-level ``if``/``try`` -- and drops the ones in a function body or under
``if TYPE_CHECKING:``, then asks the remaining graph for chains from the source rooms to the forbidden packages.
Registered in pyproject.toml (``contract_types``); ``lint-imports`` puts the working directory on ``sys.path``.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from typing import Any, Dict, List, Set, Tuple

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _eager_lines(tree: ast.Module) -> Set[int]:
    """Line numbers of the import statements that run when the module is imported."""
    lines: Set[int] = set()

    def visit(body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                    visit(block)
            elif isinstance(node, (ast.With, ast.ClassDef)):
                visit(node.body)
            # a function body runs when it is called, not when the module is imported

    visit(tree.body)
    return lines


@lru_cache(maxsize=None)
def eager_lines(module: str) -> frozenset:
    """``_eager_lines`` of an installed or importable module's source, by module name (empty when none)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return frozenset()
    with open(spec.origin, encoding="utf-8") as handle:
        return frozenset(_eager_lines(ast.parse(handle.read())))


def eager_graph(graph: grimp.ImportGraph, roots: Tuple[str, ...]) -> grimp.ImportGraph:
    """``graph`` without the imports of ``roots``' modules that only run when a function is called."""
    for importer in sorted(m for m in graph.modules if m.split(".")[0] in roots):
        eager = eager_lines(importer)
        for imported in graph.find_modules_directly_imported_by(importer):
            details = graph.get_import_details(importer=importer, imported=imported)
            if details and not any(d["line_number"] in eager for d in details):
                graph.remove_import(importer=importer, imported=imported)
    return graph


class ModuleLevelForbiddenContract(Contract):
    """Source modules (and their descendants) must not import the forbidden ones when they are imported, directly or
    through other modules' module-level imports."""

    type_name = "module_level_forbidden"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    """The rooms the parent imports."""
    forbidden_modules = fields.ListField(subfield=fields.ModuleField())
    """Top-level packages they must not pull in (``include_external_packages = true``)."""

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        """Chains of module-level imports from each source room to each forbidden package."""
        roots = tuple(sorted({m.name.split(".")[0] for m in self.source_modules}))
        graph = eager_graph(graph, roots)
        broken: List[Dict[str, Any]] = []
        for source in self.source_modules:
            for forbidden in self.forbidden_modules:
                if forbidden.name not in graph.modules:
                    continue
                for chain in sorted(graph.find_shortest_chains(importer=source.name, imported=forbidden.name)):
                    broken.append({"source": source.name, "forbidden": forbidden.name, "chain": list(chain)})
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One block per source and forbidden package: the chain of module-level imports."""
        for item in check.metadata["broken"]:
            output.print_error(f"{item['source']} imports {item['forbidden']} at module import:")
            output.print_error("    " + " -> ".join(item["chain"]), bold=False)
            output.new_line()
