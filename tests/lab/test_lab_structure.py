"""The lab's house rules (issue 21), read from its source: no import cycle among its modules (imports inside
functions and under ``TYPE_CHECKING`` count), no module taking another's underscore names, no file over 450
lines. Debts owned elsewhere are listed with their owner (issue 21); a new one fails."""

import ast
from pathlib import Path

import adaptlr.lab

LAB = Path(adaptlr.lab.__file__).parent
MAX_LINES = 450
# known debts, each to be paid by its owner (a fixed one may simply be removed from here)
KNOWN_CYCLES: set[tuple[str, ...]] = set()  # (none left)
KNOWN_LONG: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(LAB.rglob("*.py")):
        parts = list(f.relative_to(LAB).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["adaptlr.lab", *parts])] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(module imported, name taken from it or "") for every import of a lab module in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for a in node.names:
                if f"{source}.{a.name}" in modules:
                    out.append((f"{source}.{a.name}", ""))
                elif source in modules:
                    out.append((source, a.name))
    return out


def test_no_import_cycle_in_the_lab():
    modules = _modules()
    graph = {m: {t for t, _ in _imports(m, f, modules) if t not in (m, "adaptlr.lab")} for m, f in modules.items()}
    cycles = []

    def visit(m, path):
        for t in graph[m]:
            if t in path:
                cycles.append(path[path.index(t) :] + [t])
            elif t not in done:
                visit(t, path + [t])
        done.add(m)

    done: set[str] = set()
    for m in graph:
        if m not in done:
            visit(m, [m])
    new = [c for c in cycles if tuple(sorted(set(c))) not in KNOWN_CYCLES]
    assert not new, " ; ".join(" -> ".join(c) for c in new)


def test_no_module_takes_another_modules_underscore_names():
    modules = _modules()
    taken = [
        f"{f.relative_to(LAB)}: {source}.{n}"
        for m, f in modules.items()
        for source, n in _imports(m, f, modules)
        if n.startswith("_") and source != m
    ]
    assert not taken


def test_no_lab_file_over_450_lines():
    long = {str(f.relative_to(LAB)): n for f in LAB.rglob("*.py") if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not {f: n for f, n in long.items() if f not in KNOWN_LONG}
