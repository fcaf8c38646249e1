"""The layout of the apps (docs/architecture.md, "Layout"): the shared package `signalserver/` imports
no domain app (an app registers what the shared code calls, e.g. the bearer-token authenticator and
its purges), and no module of `signalserver/` or `accounts/` imports itself through others.

Read from the source with `ast`: every import statement counts, at module level or inside a function,
`import x.y` and `from x import y` alike (`from pkg import module` is an import of the module)."""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]

DOMAIN_APPS = ("accounts", "keys", "messaging", "groups", "media", "push")
PACKAGES = ("signalserver", *DOMAIN_APPS)
# The project's wiring: it names every app on purpose (settings, URL and socket routes, the ASGI
# and Celery applications, app configs). The operator dashboard reads across apps by design; the
# management commands and migrations are operator tools, not shared code.
WIRING = {"settings.py", "urls.py", "asgi.py", "routing.py", "celery.py", "apps.py", "dashboard.py"}
TOOL_FOLDERS = {"migrations", "management"}


@dataclass(frozen=True)
class Edge:
    source: str  # module names
    target: str
    path: pathlib.Path
    line: int

    def where(self, root: pathlib.Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def project_modules(root: pathlib.Path, packages=PACKAGES) -> dict[str, pathlib.Path]:
    """Module name → file, for every .py file of the given top-level packages."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _known(name: str, modules: dict[str, pathlib.Path]) -> str | None:
    """The deepest project module `name` names (a name inside a module resolves to the module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_edges(root: pathlib.Path, modules: dict[str, pathlib.Path]) -> list[Edge]:
    """Every import of a project module by a project module, wherever it stands in the file."""
    edges = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import name`: the submodule when there is one, else the package itself.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in dict.fromkeys(_known(target, modules) for target in targets):
                if target is not None and target != module:
                    edges.append(Edge(module, target, path, node.lineno))
    return edges


def is_shared(module: str, path: pathlib.Path) -> bool:
    """A module of signalserver/ that every app builds on (not wiring, not an operator tool)."""
    parts = module.split(".")
    if parts[0] != "signalserver" or TOOL_FOLDERS & set(parts):
        return False
    return not (path.name in WIRING or path.name.startswith("settings"))


def domain_imports(root: pathlib.Path) -> list[str]:
    """Each import of a domain app by a shared module of signalserver/, as `file:line imports x`."""
    modules = project_modules(root)
    found = []
    for edge in import_edges(root, modules):
        if is_shared(edge.source, modules[edge.source]) and edge.target.split(".")[0] in DOMAIN_APPS:
            found.append(f"{edge.where(root)} imports {edge.target}")
    return found


def import_cycles(root: pathlib.Path, packages=("signalserver", "accounts")) -> list[str]:
    """One cycle per strongly connected group of modules of `packages`, as `a -> b (file:line) -> … -> a`."""
    modules = project_modules(root)
    inside = {name for name in modules if name.split(".")[0] in packages}
    graph: dict[str, dict[str, Edge]] = {name: {} for name in inside}
    for edge in import_edges(root, modules):
        if edge.source in inside and edge.target in inside:
            graph[edge.source].setdefault(edge.target, edge)
    cycles = []
    for group in _strongly_connected(graph):
        if len(group) > 1:
            cycles.append(_describe(_cycle_within(graph, group), graph, root))
    return cycles


def _strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph has hundreds of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in sorted(graph):
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
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _cycle_within(graph: dict[str, dict[str, Edge]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module (breadth-first back to it)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor not in group:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle in {group}")


def _describe(cycle: list[str], graph: dict[str, dict[str, Edge]], root: pathlib.Path) -> str:
    hops = [cycle[0]]
    for source, target in zip(cycle, cycle[1:]):
        hops.append(f"{target} ({graph[source][target].where(root)})")
    return " -> ".join(hops)


# ---- the checks can fail ------------------------------------------------------------------------


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_domain_import_in_a_shared_module_is_found_wherever_it_stands(tmp_path):
    _write(
        tmp_path,
        {
            "signalserver/__init__.py": "",
            "signalserver/auth.py": "import hmac\n\ndef f():\n    from accounts.tokens import authenticate_bearer\n",
            "signalserver/purges.py": "from accounts import retention\n",
            "signalserver/wire.py": "import messaging.models\n",
            "signalserver/rows.py": "from . import wire\n",
            "signalserver/urls.py": "from accounts import views\n",  # wiring: allowed
            "signalserver/settings_test.py": "import accounts\n",  # wiring: allowed
            "signalserver/management/commands/ban.py": "from accounts.models import Account\n",  # a tool
            "signalserver/migrations/0001_initial.py": "import accounts.models\n",
            "accounts/__init__.py": "",
            "accounts/tokens.py": "",
            "accounts/retention.py": "",
            "accounts/views.py": "",
            "accounts/models.py": "",
            "messaging/__init__.py": "",
            "messaging/models.py": "",
        },
    )
    assert domain_imports(tmp_path) == [
        "signalserver/auth.py:4 imports accounts.tokens",
        "signalserver/purges.py:1 imports accounts.retention",
        "signalserver/wire.py:1 imports messaging.models",
    ]


def test_a_cycle_is_found_through_function_level_and_package_imports(tmp_path):
    _write(
        tmp_path,
        {
            "signalserver/__init__.py": "",
            "signalserver/auth.py": "def f():\n    from accounts.tokens import authenticate_bearer\n",
            "signalserver/ratelimit.py": "from signalserver import operator_settings\n",
            "signalserver/operator_settings.py": "import signalserver.ratelimit\n",
            "accounts/__init__.py": "",
            "accounts/tokens.py": "from accounts import services\n",
            "accounts/services.py": "from signalserver.auth import SaltedTokenHash\n",
            "accounts/models.py": "",
        },
    )
    assert sorted(import_cycles(tmp_path)) == [
        "accounts.services -> signalserver.auth (accounts/services.py:1)"
        " -> accounts.tokens (signalserver/auth.py:2) -> accounts.services (accounts/tokens.py:1)",
        "signalserver.operator_settings -> signalserver.ratelimit (signalserver/operator_settings.py:1)"
        " -> signalserver.operator_settings (signalserver/ratelimit.py:1)",
    ]
    _write(tmp_path, {"signalserver/operator_settings.py": "import signalserver\n"})
    assert len(import_cycles(tmp_path)) == 1


# ---- the project ------------------------------------------------------------------------------


def test_the_shared_package_imports_no_domain_app():
    found = domain_imports(ROOT)
    assert found == [], "signalserver/ must not import a domain app; register it from the app instead:\n" + "\n".join(found)


def test_signalserver_and_accounts_have_no_import_cycle():
    cycles = import_cycles(ROOT)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
