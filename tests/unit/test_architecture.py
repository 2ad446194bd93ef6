"""The layout's load-bearing rules, read from the source with an AST walk of every import (module level
and inside functions): no service package imports another, services/common is plumbing only, the data
layer and identity (a layer under the services, over the data layer, that every service may use) stand on
nothing above them, the client never imports the servers, and no import cycles. Also:
no module over MAX_LINES lines unless its docstring says the one job it does."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"services": ROOT / "services", "mlgrid": ROOT / "client" / "mlgrid"}
SERVICE_PACKAGES = {"tracking", "artifacts", "registry", "serving", "gateway"}
# The services that share the database stand on services/db; the others may use only its pure input checks.
DATABASE_USERS = {"tracking", "registry"}
PURE_DB_MODULES = {"services.db.validation"}
MAX_LINES = 500


def _generated(path: Path) -> bool:
    return path.name.endswith(("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"))


def _modules() -> dict[str, Path]:
    found = {}
    for top, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            if _generated(path):
                continue
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(module: str, path: Path) -> set[str]:
    """Every module name `module` imports, anywhere in its body, relative imports resolved (a package's
    __init__ runs before its submodules, so importing a submodule is no edge to the package)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from package import module` imports the module; `from module import name`, the module
            names.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    return names


def _own_module(name: str) -> str | None:
    """The module of this project that an imported name lands in (its longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        targets = {_own_module(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


GRAPH = _graph()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else parts[0]


def test_the_walk_sees_the_imports_it_must_judge():
    assert "services.db.schema" in GRAPH["services.tracking.store.search"]
    assert "services.common.errors" in GRAPH["services.registry.store.validation"]
    assert "mlgrid.entities" in GRAPH["mlgrid.client"]
    assert "services.db.migrations" in GRAPH["services.tracking.service"]  # an import inside a function counts


@pytest.mark.parametrize("service", sorted(SERVICE_PACKAGES))
def test_no_service_imports_another(service):
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if _layer(module) == service
        for target in targets if _layer(target) in SERVICE_PACKAGES - {service}
    )
    assert not crossing, (
        "a service package imports another; what one needs of another's behaviour goes over gRPC, "
        f"what they share lives in services/db or services/common: {crossing}"
    )


def test_only_the_database_users_stand_on_the_data_layer():
    crossing = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if _layer(module) in SERVICE_PACKAGES - DATABASE_USERS
        for target in targets if _layer(target) == "db" and target not in PURE_DB_MODULES
    )
    assert not crossing, f"only {sorted(DATABASE_USERS)} use the database: {crossing}"


@pytest.mark.parametrize("layer, allowed", [
    ("common", {"common"}), ("db", {"db", "common"}), ("identity", {"identity", "db", "common"}),
])
def test_lower_layers_import_nothing_above_them(layer, allowed):
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if module.startswith("services.") and _layer(module) == layer
        for target in targets if target.startswith("services.") and _layer(target) not in allowed
    )
    assert not upward, f"services/{layer} may import only services/{'|'.join(sorted(allowed))}: {upward}"


def test_the_client_never_imports_the_servers():
    imports = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items() if module.startswith("mlgrid")
        for target in targets if target.startswith("services")
    )
    assert not imports, f"client/mlgrid must install without the servers: {imports}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("top", sorted(PACKAGES))
def test_no_import_cycles(top):
    graph = {m: {t for t in targets if t.startswith(top)} for m, targets in GRAPH.items() if m.startswith(top)}
    assert not _cycles(graph), f"import cycles in {PACKAGES[top].relative_to(ROOT)}: {_cycles(graph)}"


def test_no_cycles_between_service_packages():
    packages = {}
    for module, targets in GRAPH.items():
        if module.startswith("services."):
            packages.setdefault(_layer(module), set()).update(_layer(t) for t in targets if t.startswith("services."))
    for layer, targets in packages.items():
        targets.discard(layer)
    assert not _cycles(packages), f"packages of services/ import each other: {_cycles(packages)}"


def test_long_modules_say_their_one_job():
    too_long = []
    for module, path in MODULES.items():
        lines = path.read_text().count("\n")
        if lines > MAX_LINES and "One job:" not in (ast.get_docstring(ast.parse(path.read_text())) or ""):
            too_long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not too_long, (
        f"modules over {MAX_LINES} lines: split them by topic, or say in the module docstring "
        f"'One job: ...' when one job needs the length: {too_long}"
    )


def test_services_without_an_http_side_never_load_aiohttp():
    """aiohttp is ~10 MB of resident memory in each pod of tracking, artifacts and registry, which serve only gRPC."""
    import subprocess
    import sys

    code = "import sys, services.tracking.__main__, services.artifacts.__main__, services.registry.__main__; print('aiohttp' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert loaded.strip() == "False"
