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


def test_classify_imports_nothing_from_extract():
    """classify (pixel work and predict included) reads caches and images through featurecache, never extract."""
    found = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in sorted((ROOT / "classify").rglob("*.py"))
             for line, module in imported_modules(ast.parse(path.read_text())) if module == "extract" or module.startswith("extract.")]
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


STAGES = ("extract", "classify", "bench")
# the modules of featurecache that sit above the stages: the Python API and the one command
ABOVE_THE_STAGES = ("featurecache/api.py", "featurecache/cli.py")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute module an AST imports, at any depth (inside functions too), with its line;
    `importlib.import_module("...")` with a literal name counts."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_the_shared_core_imports_no_stage():
    """featurecache is the bottom layer: none of its modules imports extract, classify or bench, at module
    level or inside a function; only the API and the command above the stages do."""
    found = []
    for path in sorted((ROOT / "featurecache").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in ABOVE_THE_STAGES:
            continue
        for line, module in imported_modules(ast.parse(path.read_text())):
            if module.split(".")[0] in STAGES:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not found, "\n".join(found)


def test_the_core_check_sees_an_import_inside_a_function():
    tree = ast.parse("def f():\n    from classify.training import train\n    import importlib\n"
                     "    importlib.import_module('extract.cli')\n")
    assert [m for _, m in imported_modules(tree)] == ["classify.training", "importlib", "extract.cli"]


def test_importing_featurecache_and_its_api_names_imports_no_tensorflow_and_no_stage():
    import subprocess
    import sys

    probe = ("import sys, featurecache; featurecache.extract, featurecache.load, featurecache.train, "
             "featurecache.load_run, featurecache.Run; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'extract', 'classify', "
             "'bench'}))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_test_file_imports_another_and_the_shared_helpers_are_defined_once():
    """Helpers several test files use live in tests/conftest.py: no test file imports from another
    test file, and none defines again a helper function conftest holds."""
    tests = ROOT / "tests"
    conftest = ast.parse((tests / "conftest.py").read_text())
    shared = {node.name for node in conftest.body if isinstance(node, ast.FunctionDef)
              and not any("fixture" in ast.unparse(d) for d in node.decorator_list)}
    found = []
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for line, module in imported_modules(tree):
            if module.split(".")[0].startswith("test_"):
                found.append(f"tests/{path.name}:{line} imports {module}")
        found += [f"tests/{path.name}:{node.lineno} defines {node.name} again" for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name in shared]
    assert shared >= {"invoke", "blob_cache", "snapshot", "assert_clean_failure"}
    assert not found, "\n".join(found)
# The command layer: the only modules that know click. Everything else raises featurecache.errors.
COMMAND_LAYER = ("featurecache/cli.py", "featurecache/command.py", "featurecache/__main__.py", "extract/cli.py",
                 "extract/__main__.py", "classify/cli.py", "classify/__main__.py", "classify/options.py",
                 "classify/commands/")
LIBRARY = ("featurecache", "extract", "classify")   # bench is a development tool with commands of its own


def in_command_layer(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == c or (c.endswith("/") and rel.startswith(c)) for c in COMMAND_LAYER)


def library_sources() -> list[Path]:
    return [p for pkg in LIBRARY for p in sorted((ROOT / pkg).rglob("*.py")) if not in_command_layer(p)]


def test_the_command_layer_exists():
    for entry in COMMAND_LAYER:
        assert (ROOT / entry).exists(), entry
    assert library_sources() and len(library_sources()) < len(sources())


def test_no_module_outside_the_command_layer_imports_click_or_raises_a_click_exception():
    found = []
    for path in library_sources():
        tree = ast.parse(path.read_text())
        clicked = set()   # local names bound to click or to something from it
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports click")
                clicked |= {(a.asname or a.name).split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports from click")
                clicked |= {a.asname or a.name for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                while isinstance(target, ast.Attribute):
                    target = target.value
                if isinstance(target, ast.Name) and (target.id in clicked or target.id == "click"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} raises a click exception")
    assert not found, "\n".join(found)


def test_the_library_imports_nothing_from_the_command_layer():
    """Commands call the library, never the other way round (featurecache.cli names its subcommands as
    strings and imports each only when it runs)."""
    layer = {module_name(p) for pkg in LIBRARY for p in (ROOT / pkg).rglob("*.py") if in_command_layer(p)}
    found = []
    for path in library_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n in layer or n.startswith("classify.commands")]
    assert not found, "\n".join(found)


def test_the_project_error_is_not_a_click_exception():
    """A notebook user meets featurecache.errors, never click; a setting's error is also a ValueError."""
    import click

    from featurecache.errors import SettingError, UserError

    assert not issubclass(UserError, click.ClickException)
    e = SettingError("train_size=5000 is more than the 300 training rows; pass at most 300")
    assert isinstance(e, ValueError) and e.setting == "train_size" and str(e).startswith("train_size=5000")


def test_every_module_the_benches_makefile_and_docs_run_with_python_m_runs():
    """`python -m X` in a bench step, a make target or the docs: X is a module with a `__main__` block, or a
    package with a __main__.py (a module moved without its entry point runs nothing and exits 0)."""
    import importlib.util
    import re

    named = {}
    for path in [*ROOT.glob("bench/*.py"), ROOT / "Makefile", ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        text = path.read_text()
        for mod in re.findall(r'"-m", "([A-Za-z_][\w.]*)"', text) + re.findall(r"python -m ([A-Za-z_][\w.]*)", text):
            named.setdefault(mod, path.name)
    named = {m: p for m, p in named.items() if m.split(".")[0] in ("bench", "classify", "extract", "featurecache")}
    assert "featurecache" in named and any(m.startswith("bench.") for m in named)
    broken = []
    for mod, where in sorted(named.items()):
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            broken.append(f"{mod} (in {where}): no such module")
            continue
        main = Path(spec.origin).with_name("__main__.py") if spec.submodule_search_locations else Path(spec.origin)
        if not main.exists() or 'if __name__ == "__main__"' not in main.read_text() and main.name != "__main__.py":
            broken.append(f"{mod} (in {where}): nothing runs under python -m")
    assert broken == []
