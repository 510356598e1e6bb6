"""The package's layers: every import goes downwards, nothing imports in a circle, the engine
imports alone, and every function fits on a screen.

The imports are read from the source with ``ast``, inside functions too, so a deferred
import cannot hide a dependency on a higher layer.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tinymuse"

# Lowest first. A module may import modules of its own layer or of lower ones only. The
# package's __init__ (``tinymuse``) stands above them all: it re-exports for users.
LAYERS = [
    ["backend", "files"],
    ["autograd"],
    ["ops"],
    ["tensor"],
    ["functional", "gradcheck"],
    ["nn", "optim", "checkpoint", "masking"],
    ["data"],
    ["text", "vq"],
    ["sampling", "decoding", "raster"],
    ["models"],
    ["evaluate"],
    ["training"],
    ["editing", "pipeline_files", "pipeline", "step_pictures"],
    ["cascade", "course"],
    ["cli", "__main__"],
]
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}
ENGINE = {"tinymuse", "tinymuse.backend", "tinymuse.autograd", "tinymuse.tensor",
          "tinymuse.functional"}


def module_name(path: Path) -> str:
    parts = ("tinymuse",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The tinymuse modules that module ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] \
                if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` may name a module x of the package
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES
                       else module for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] == "tinymuse" and t != name}
    return found


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer():
    unplaced = [name for name in MODULES if name != "tinymuse" and layer(name) is None]
    assert not unplaced, f"add these modules to LAYERS: {unplaced}"


def test_no_module_imports_a_higher_layer():
    upward = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
              for name in MODULES if name != "tinymuse"
              for target in imported_modules(name)
              if layer(target) is not None and layer(target) > layer(name)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {name: {t for t in imported_modules(name) if t in MODULES and t != "tinymuse"}
             for name in MODULES}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_deferred_and_relative_imports(tmp_path):
    # the command imports the cascade only inside its train command, with a relative import
    assert "tinymuse.cascade" in imported_modules("tinymuse.cli.train")
    assert "tinymuse.autograd" in imported_modules("tinymuse.ops.elementwise")


def test_the_engine_imports_alone():
    code = ("import sys, tinymuse.tensor; "
            "print(sorted(m for m in sys.modules if m.startswith('tinymuse')))")
    loaded = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
    beyond = [m for m in loaded if m not in ENGINE and not m.startswith("tinymuse.ops")]
    assert not beyond, f"import tinymuse.tensor also loads {beyond}"
    assert len(loaded) <= 20


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_function_is_longer_than_a_screen(name):
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 80]
    assert not long, f"{name}: {long}"
