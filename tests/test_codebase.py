"""The codebase's own rules, checked on its source: no private reaching across modules, command modules
are leaves, and no function grows past what a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("featurecache", "extract", "classify", "bench")


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_or_reads_a_private_name_of_another():
    found = []
    for path in sources():
        tree = ast.parse(path.read_text())
        imported = {}  # local name -> project module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        imported[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def test_command_modules_are_leaves():
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".cli"):
                if path.name != "__main__.py" and module_name(path) != node.module:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert not found, "\n".join(found)


def test_functions_stay_short():
    """Long functions do several jobs; split them into named steps (docstrings excluded)."""
    limit, found = 60, []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
                if lines > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {lines} lines")
    assert not found, "\n".join(found)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, at any level (inside functions too); relative ones resolved."""
    package = module_name(path).split(".")
    package = package if path.name == "__init__.py" else package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            module = ".".join(p for p in (base, node.module or "") if p)
            # `from .. import x` names the module x itself; `from a.b import c` imports from a.b
            found += [(node.lineno, module if node.module else ".".join(p for p in (module, alias.name) if p))
                      for alias in node.names]
    return found


def test_classify_imports_nothing_from_extract():
    """classify (pixel work and predict included) reads caches and images through featurecache, never extract."""
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in sorted((ROOT / "classify").rglob("*.py"))
             for line, module in imported_modules(path) if module == "extract" or module.startswith("extract.")]
    assert not found, "\n".join(found)


def test_the_shared_image_modules_import_no_stage_and_no_tensorflow():
    """featurecache.images and featurecache.cifar sit under every stage: no stage import in them, and no
    TensorFlow/Keras either, at any level (a gallery must not pay TensorFlow's start-up)."""
    found = []
    for name in ("images", "cifar"):
        path = ROOT / "featurecache" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                root = module.split(".")[0]
                if root in ("extract", "classify", "bench"):
                    found.append(f"{name}.py:{node.lineno} imports the stage {module}")
                if root in ("tensorflow", "keras") or module == "featurecache.tfimport":
                    found.append(f"{name}.py:{node.lineno} imports {module}")
    assert not found, "\n".join(found)
