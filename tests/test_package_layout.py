"""The package's shape: the layers of docs/architecture.md, imports pointing down them only,
no cycle, no GUI in the core, short functions and modules, no repeated blocks."""

import ast
import re
from pathlib import Path

import napari_unet

PACKAGE = Path(napari_unet.__file__).parent
ARCHITECTURE = Path(__file__).parents[1] / "docs" / "architecture.md"
GUI_PACKAGES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt",
                "vispy", "psygnal")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules() -> dict[str, ast.Module]:
    """Dotted name relative to the package (``"model"``, ``"_widgets.run"``) -> parsed source."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Everything ``name`` imports, anywhere in its code: package modules as their
    relative dotted names ("" for the package itself), other packages by top-level name."""
    is_package = (PACKAGE / name.replace(".", "/") / "__init__.py").exists()
    here = name.split(".") if name else []
    base_parts = here if is_package else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                found.add(".".join(top[1:]) if top[0] == "napari_unet" else top[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = (node.module or "").split(".")
                found.add(".".join(top[1:]) if top[0] == "napari_unet" else top[0])
                continue
            parts = base_parts[:len(base_parts) - (node.level - 1)]
            target = parts + (node.module.split(".") if node.module else [])
            if node.module is None:  # "from . import x": x may be a module or a name
                for alias in node.names:
                    candidate = ".".join(target + [alias.name])
                    found.add(candidate if _exists(candidate) else ".".join(target))
            else:
                found.add(".".join(target))
    return found


def _exists(name: str) -> bool:
    path = PACKAGE / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {i for i in _imports(name, tree) if i in modules and i != name}
            for name, tree in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_import_cycle():
    graph = {name: deps - {""} for name, deps in _graph().items() if name}
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_the_package_init():
    offenders = [name for name, deps in _graph().items() if name and "" in deps]
    assert offenders == []


def test_the_core_imports_no_gui():
    offenders = {}
    for name, tree in _modules().items():
        if name.startswith("_widgets") or name == "_sample_provider":
            continue
        gui = sorted(i for i in _imports(name, tree) if i.split(".")[0] in GUI_PACKAGES)
        if gui:
            offenders[name] = gui
    assert offenders == {}


def test_the_widgets_hold_no_ml():
    for name, tree in _modules().items():
        if name.startswith("_widgets"):
            imported = {i.split(".")[0] for i in _imports(name, tree)}
            assert not imported & {"keras", "tensorflow", "jax", "torch"}, name


def test_no_function_is_longer_than_60_lines():
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the lines that are code: no blanks, comments, imports."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if text and not text.startswith(("#", "import ", "from ")) and text not in (")", "]", "}", '"""'):
            out.append((number, text))
    return out


def test_no_block_of_six_lines_is_repeated():
    seen: dict[tuple[str, ...], str] = {}
    repeated = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = _code_lines(path)
        for i in range(len(lines) - 5):
            block = tuple(text for _, text in lines[i:i + 6])
            where = f"{path.relative_to(PACKAGE)}:{lines[i][0]}"
            if block in seen:
                repeated.append(f"{where} repeats {seen[block]}")
            seen.setdefault(block, where)
    assert repeated == []


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def layer_table() -> list[str]:
    """The packages and top-level modules of the layer table of docs/architecture.md, top
    (front ends) first: the first column of each row of the table under "## Layers"."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Layers"):]
    section = section[:section.index("\n## ", 3)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([\w.]+)/?`", row)[1] for row in rows]


def _layer_of(module: str, order: list[str]) -> int:
    top = module.split(".")[0]
    return order.index(top)


def upward_imports(graph: dict[str, set[str]], order: list[str]) -> list[str]:
    """"a imports b" for every import of a module in a layer above it (later in ``order``
    means lower); the package's ``__init__`` (its lazy public API) is left out."""
    found = []
    for name, deps in sorted(graph.items()):
        if not name:
            continue
        for dep in sorted(deps - {""}):
            if _layer_of(dep, order) < _layer_of(name, order):
                found.append(f"{name} imports {dep}")
    return found


def test_every_package_has_a_row_in_the_layer_table():
    tops = {name.split(".")[0] for name in _modules() if name}
    assert sorted(tops) == sorted(layer_table())


def test_imports_point_down_the_layer_table():
    assert upward_imports(_graph(), layer_table()) == []


def test_an_import_up_the_table_is_found():
    order = ["cli", "model", "common"]
    graph = {"model.files": {"common.checks", "cli.parser"}, "cli.parser": {"model.files"}}
    assert upward_imports(graph, order) == ["model.files imports cli.parser"]


def test_nothing_in_the_package_imports_the_testing_helpers():
    users = [name for name, deps in _graph().items()
             if not name.startswith("testing") and any(d.startswith("testing") for d in deps)]
    assert users == []


def test_public_names_are_not_shadowed_by_subpackages():
    """``from napari_unet import predict`` gives the function even after the subpackages
    were imported (a subpackage of the same name would replace it)."""
    import importlib
    import pkgutil
    import types

    for info in pkgutil.walk_packages(napari_unet.__path__, "napari_unet."):
        if not info.name.startswith(("napari_unet._widgets", "napari_unet.cli.__main__")):
            importlib.import_module(info.name)
    shadowed = [name for name in napari_unet.__all__
                if isinstance(getattr(napari_unet, name), types.ModuleType)]
    assert shadowed == []
