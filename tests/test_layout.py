"""The package's shape: two layers (the library never imports the lab), no import cycle (lazy
imports included), no module over 450 lines, a core that needs only jax/optax/numpy/chex, and an
``import imu_jax`` that loads no experiment-only dependency."""

import ast
import pathlib
import subprocess
import sys

import pytest


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "imu_jax"
CORE = ("influence", "weights", "transforms", "heads", "accumulation", "lm_head", "_checks",
        "_layout", "_traced", "_per_example", "_chain_order", "_factored", "_compile_clock")
CORE_ALLOWED = {"jax", "optax", "numpy", "chex", "imu_jax"} | set(sys.stdlib_module_names)
MAX_LINES = 450


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _deprecation_aliases(tree) -> set[int]:
    """Lines of a module-level ``__getattr__`` (a deprecation alias imports lazily, on use)."""
    return {n.lineno for f in tree.body if isinstance(f, ast.FunctionDef)
            and f.name == "__getattr__" for n in ast.walk(f) if hasattr(n, "lineno")}


def _imports(path: pathlib.Path, *, aliases: bool = True) -> list[tuple[str, int]]:
    """Every import in the file (top level and inside functions) as ``(module, line)``; without
    ``aliases``, not those of a deprecation alias."""
    found = []
    tree = ast.parse(path.read_text())
    skip = set() if aliases else _deprecation_aliases(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names
                          if f"{node.module}.{alias.name}" in MODULES]
            if len(submodules) < len(node.names):  # names from the module itself
                found.append((node.module, node.lineno))
            found += [(module, node.lineno) for module in submodules]
    return found


def _edges() -> dict[str, set[str]]:
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for module, _ in _imports(path):
            if module in MODULES and module != name:
                graph[name].add(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _without_package_inits(graph):
    """Edges into a package's ``__init__`` from its own submodules are how Python imports a
    submodule, not a design dependency: the package's re-exports are checked separately."""
    return {v: {w for w in ws if not v.startswith(w + ".")} for v, ws in graph.items()}


def test_no_import_cycle_lazy_imports_included():
    assert _cycles(_without_package_inits(_edges())) == []


def test_the_library_never_imports_the_lab():
    offenders = [f"{name} imports {module} (line {line})"
                 for name, path in MODULES.items() if not name.startswith("imu_jax.lab")
                 for module, line in _imports(path, aliases=False)
                 if module == "imu_jax.lab" or module.startswith("imu_jax.lab.")]
    assert offenders == []


def test_the_core_imports_only_jax_optax_numpy_chex():
    offenders = []
    for short in CORE:
        path = PACKAGE / f"{short}.py"
        if not path.exists():
            continue
        for module, line in _imports(path):
            top = module.split(".")[0]
            inside = module.startswith("imu_jax.") and module.split(".")[1] in CORE
            if top not in CORE_ALLOWED or (top == "imu_jax" and not inside):
                offenders.append(f"{short}.py:{line} imports {module}")
    assert offenders == []


def test_no_module_over_450_lines():
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
             for path in MODULES.values()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("statement", ["import imu_jax", "import imu_jax as imu; imu.unlearn",
                                       "import imu_jax.unlearning, imu_jax.sharding"])
def test_import_loads_no_experiment_only_dependency(statement):
    heavy = ["tensorflow_datasets", "tensorflow", "sklearn", "matplotlib", "scipy", "PIL",
             "mnist1d", "imu_jax.lab", "imu_jax.data"]
    code = (f"import sys; {statement}; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("blocked,argv,extra", [
    ("tensorflow_datasets", ["run", "--dataset", "digits", "--forget", "class:3", "--out", "OUT"],
     "data"),
    ("tensorflow_datasets", ["data", "--dataset", "digits"], "data"),
])
def test_a_command_without_its_extra_says_which_pip_install(blocked, argv, extra, tmp_path):
    """With an optional dependency missing, ``imu-jax`` prints one line naming the install."""
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code = (f"import sys; sys.modules[{blocked!r}] = None; from imu_jax.lab import cli; "
            f"sys.exit(cli.main({argv!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'imu-jax[{extra}]'" in lines[0], out.stderr


def test_the_svc_attack_without_scikit_learn_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None; import numpy as np, imu_jax as imu\n"
            "try:\n    imu.mia_efficacy(np.ones((4, 3)) / 3, np.zeros(4, int), np.ones((4, 3)) / 3,"
            " np.zeros(4, int), np.ones((4, 3)) / 3, np.zeros(4, int))\n"
            "except ImportError as err:\n    print(err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'imu-jax[experiments]'" in out.stdout, out.stdout + out.stderr
