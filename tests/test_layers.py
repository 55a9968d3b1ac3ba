"""The laptop package's layers: every import inside orch_wrapper (at the top, inside functions, under TYPE_CHECKING)
goes down the table below, never up and never round in a circle; a failure names the import that breaks the rule.

    cli -> commands -> sandbox -> {transport, ui} -> model -> config/errors
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "orch_wrapper"

# (layer, rank, modules): a module may import its own layer and every layer of a lower rank. Layers of one rank are
# peers and do not import each other (transport and ui: a verb wires the two together).
LAYERS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("cli", 6, ("orch_wrapper.cli", "orch_wrapper.__main__")),
    ("commands", 5, ("orch_wrapper.commands", "orch_wrapper.commands.*")),
    ("sandbox", 4, ("orch_wrapper.sandbox", "orch_wrapper.sandbox.*")),  # beside the verbs: commands.sandbox calls it
    ("transport", 3, ("orch_wrapper.transport", "orch_wrapper.transport.*", "orch_wrapper.paths")),
    ("ui", 3, ("orch_wrapper.ui", "orch_wrapper.plain")),
    ("model", 2, ("orch_wrapper.model",)),
    (
        "config/errors",
        1,
        (
            "orch_wrapper",
            "orch_wrapper.config",
            "orch_wrapper.config_file",
            "orch_wrapper.errors",
            "orch_wrapper.timings",
        ),
    ),
)
# The verb modules: they share commands/shared.py and commands/spec.py, never each other's internals.
VERBS = tuple(
    f"orch_wrapper.commands.{name}"
    for name in ("jobs", "read", "fleet", "doctor", "sandbox", "power", "cost", "settings", "pull")
)
# Libraries that one module alone adapts.
SOLE_IMPORTERS = {
    "ansible_runner": "orch_wrapper.transport.runner",
    "boto3": "orch_wrapper.transport.aws",
    "rich": "orch_wrapper.ui",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    path: str  # its file, relative to the project
    line: int
    target: str  # the module imported (a `from M import name` of a submodule counts as that submodule)

    def where(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of PACKAGE under ROOT, by dotted name (a package by its __init__.py). Folders without an
    __init__.py are data, not modules (a wheel's orch_wrapper/_project holds the Ansible project's own .py files)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        folders = path.parent.relative_to(root).parts
        if not all((root.joinpath(*folders[:n]) / "__init__.py").is_file() for n in range(1, len(folders) + 1)):
            continue
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(root: Path, package: str = PACKAGE) -> list[Import]:
    """Every import statement of PACKAGE's modules, relative ones resolved."""
    known = modules(root, package)
    found = []
    for name, path in known.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        shown = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):  # walk: function bodies too
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                origin = ".".join([*base, *([node.module] if node.module else [])])
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
            else:
                continue
            found += [Import(name, shown, node.lineno, target) for target in dict.fromkeys(targets)]
    return sorted(found, key=lambda i: (i.path, i.line, i.target))


def layer_of(module: str, layers: Sequence[tuple[str, int, tuple[str, ...]]] = LAYERS) -> tuple[str, int] | None:
    for layer, rank, patterns in layers:
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return layer, rank
    return None


def circles(edges: Iterable[Import]) -> list[str]:
    """One message per import circle (a strongly connected group of modules), naming the imports that close it."""
    graph: dict[str, dict[str, Import]] = {}
    for edge in edges:
        if edge.target != edge.source:
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    messages = []
    for group in sorted(groups, key=min):
        start = min(group)
        paths: dict[str, list[Import]] = {start: []}
        queue = [start]
        while queue:  # the shortest way round from the group's first module back to it
            node = queue.pop(0)
            for nxt, edge in sorted(graph.get(node, {}).items()):
                if nxt == start:
                    messages.append("import circle: " + " -> ".join(e.where() for e in [*paths[node], edge]))
                    queue = []
                    break
                if nxt in group and nxt not in paths:
                    paths[nxt] = [*paths[node], edge]
                    queue.append(nxt)
    return messages


def violations(
    root: Path,
    package: str = PACKAGE,
    layers: Sequence[tuple[str, int, tuple[str, ...]]] = LAYERS,
    verbs: Sequence[str] = VERBS,
    sole_importers: Mapping[str, str] = SOLE_IMPORTERS,
) -> list[str]:
    problems = []
    for name, path in modules(root, package).items():
        if layer_of(name, layers) is None:
            problems.append(
                f"{path.relative_to(root).as_posix()} is in no layer (add it to LAYERS in tests/test_layers.py)"
            )
    found = imports(root, package)
    internal = [i for i in found if i.target == package or i.target.startswith(package + ".")]
    for imp in internal:
        source, target = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if source is None:
            continue  # reported above
        if target is None:
            problems.append(f"{imp.where()}, which is in no layer")
        elif target[0] != source[0] and target[1] >= source[1]:
            lower = [layer for layer, rank, _ in layers if rank < source[1]]
            problems.append(f"{imp.where()} ({source[0]} may import only {', '.join(lower) or 'nothing of orch'})")
        if imp.target in verbs and imp.source != imp.target and source[0] == "commands":
            problems.append(f"{imp.where()} (a command may not import another verb's module: share it in commands/)")
    for imp in found:
        owner = sole_importers.get(imp.target.split(".")[0])
        if owner is not None and imp.source != owner:
            problems.append(f"{imp.where()} (only {owner} imports {imp.target.split('.')[0]})")
    return problems + circles(internal)


def test_the_package_keeps_its_layers():
    problems = violations(ROOT)
    assert problems == [], "\n".join(problems)


def test_the_host_package_imports_nothing_of_the_laptop():
    # module_utils/orch_host runs on the hosts, stdlib only: the laptop imports it, never the other way round.
    found = [i for i in imports(ROOT / "module_utils", "orch_host") if i.target.split(".")[0] == PACKAGE]
    assert found == [], "\n".join(i.where() for i in found)


def test_the_walk_sees_imports_everywhere():
    # a walk that missed function bodies or TYPE_CHECKING blocks would pass any tree
    seen = {(i.source, i.target) for i in imports(ROOT)}
    assert ("orch_wrapper.commands.sandbox", "orch_wrapper.sandbox") in seen  # inside the verb's function
    assert ("orch_wrapper.transport.runner", "ansible_runner") in seen  # inside run_playbook
    assert ("orch_wrapper.ui", "orch_wrapper.model") in seen
    assert ("orch_wrapper.cli", "orch_wrapper.commands.read") in seen  # `from .commands import ... read`


# --- the checker against small trees: each must fail, naming the import -------------------------------------------


def make_tree(root: Path, files: Mapping[str, str]) -> Path:
    """FILES (path under orch_wrapper/ -> source) as a package tree, with every package's __init__.py."""
    for name, source in {"__init__.py": "", **files}.items():
        path = root / PACKAGE / name
        for parent in path.relative_to(root).parents[:-1]:
            (root / parent).mkdir(parents=True, exist_ok=True)
            (root / parent / "__init__.py").touch()
        path.write_text(source)
    return root


BROKEN = {
    "ui-imports-a-command-in-a-function": (
        {"ui.py": "from .model import Job\n\n\ndef show():\n    from .commands import read\n", "model.py": "",
         "commands/read.py": ""},
        ["orch_wrapper/ui.py:5 imports orch_wrapper.commands.read (ui may import only model, config/errors)"],
    ),
    "model-imports-transport-for-type-checking": (
        {"model.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .transport.ssh import Host\n",
         "transport/ssh.py": ""},
        ["orch_wrapper/model.py:3 imports orch_wrapper.transport.ssh (model may import only config/errors)"],
    ),
    "transport-imports-its-peer-ui": (
        {"transport/agent.py": "from .. import ui\n", "ui.py": ""},
        ["orch_wrapper/transport/agent.py:1 imports orch_wrapper.ui (transport may import only model, config/errors)"],
    ),
    "sandbox-imports-a-verb": (
        {"sandbox/__init__.py": "from ..commands.jobs import run\n", "commands/jobs.py": ""},
        ["orch_wrapper/sandbox/__init__.py:1 imports orch_wrapper.commands.jobs "
         "(sandbox may import only transport, ui, model, config/errors)"],
    ),
    "a-verb-imports-another-verbs-internals": (
        {"commands/read.py": "from .jobs import _pick_host\nfrom . import shared\n", "commands/jobs.py": "",
         "commands/shared.py": ""},
        ["orch_wrapper/commands/read.py:1 imports orch_wrapper.commands.jobs "
         "(a command may not import another verb's module: share it in commands/)"],
    ),
    "a-second-ansible-runner-importer": (
        {"commands/jobs.py": "def run():\n    import ansible_runner\n",
         "transport/runner.py": "import ansible_runner\n"},
        ["orch_wrapper/commands/jobs.py:2 imports ansible_runner (only orch_wrapper.transport.runner imports "
         "ansible_runner)"],
    ),
    "a-module-in-no-layer": (
        {"helpers.py": "from .errors import OrchError\n", "errors.py": "",
         "config.py": "import orch_wrapper.helpers\n"},
        ["orch_wrapper/helpers.py is in no layer (add it to LAYERS in tests/test_layers.py)",
         "orch_wrapper/config.py:1 imports orch_wrapper.helpers, which is in no layer"],
    ),
    "a-circle-inside-transport": (
        {"transport/inventory.py": "def listing():\n    from .runner import envvars\n",
         "transport/runner.py": "from . import ssh\n", "transport/ssh.py": "from .inventory import Host\n"},
        ["import circle: orch_wrapper/transport/inventory.py:2 imports orch_wrapper.transport.runner -> "
         "orch_wrapper/transport/runner.py:1 imports orch_wrapper.transport.ssh -> "
         "orch_wrapper/transport/ssh.py:1 imports orch_wrapper.transport.inventory"],
    ),
}  # fmt: skip


@pytest.mark.parametrize(("files", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_tree_is_named(tmp_path, files, expected):
    assert violations(make_tree(tmp_path, files)) == expected


def test_a_tree_that_keeps_the_rule_passes(tmp_path):
    files = {
        "cli.py": "from . import config\nfrom .commands import read\n",
        "commands/read.py": "from .. import ui\nfrom ..model import Job\nfrom ..transport import ssh\n"
        "from . import shared\n",
        "commands/shared.py": "from ..transport import agent, ssh\n",
        "commands/sandbox.py": "def sandbox():\n    from .. import sandbox as box\n",
        "sandbox/__init__.py": "from ..transport import runner\nfrom . import podman\n",
        "sandbox/podman.py": "from ..errors import OrchError\n",
        "transport/ssh.py": "from orch_host import bundle\nfrom ..model import Host\nfrom .. import paths\n",
        "transport/agent.py": "from . import ssh\n",
        "transport/runner.py": "import ansible_runner\nfrom . import ssh\n",
        "paths.py": "from .errors import OrchError\n",
        "ui.py": "from .model import parse_time\n\n\ndef table():\n    from rich.table import Table\n",
        "model.py": "from .errors import OrchError\n",
        "config.py": "from .errors import OrchError\n",
        "errors.py": "",
    }
    data = tmp_path / PACKAGE / "_project" / "library"  # a wheel's copy of the Ansible project: data, not modules
    make_tree(tmp_path, files)
    data.mkdir(parents=True)
    (data / "orch_job.py").write_text("from orch_wrapper.commands import jobs\n")
    assert violations(tmp_path) == []


# The layout before the layers (fleet, runner, ssh, jobs and ui flat in orch_wrapper/), with its modules placed in
# the layers they play: the checker finds both of its circles and ui's reach up into the verbs.
OLD_LAYERS = (
    ("cli", 6, ("orch_wrapper.cli",)),
    ("commands", 5, ("orch_wrapper.jobs", "orch_wrapper.commands", "orch_wrapper.doctor")),
    ("transport", 3, ("orch_wrapper.fleet", "orch_wrapper.runner", "orch_wrapper.ssh", "orch_wrapper.agent")),
    ("ui", 3, ("orch_wrapper.ui", "orch_wrapper.plain")),
    ("config/errors", 1, ("orch_wrapper", "orch_wrapper.config", "orch_wrapper.errors", "orch_wrapper.paths")),
)
OLD_LAYOUT = {
    "fleet.py": "from . import paths\n\n\ndef inventory_list():\n    from .runner import envvars\n",
    "runner.py": "from . import paths, ssh\n",
    "ssh.py": "from .fleet import Host\n",
    "jobs.py": "from . import agent, fleet, ssh, ui\n",
    "ui.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .jobs import Job\n\n\ndef job_row():\n"
    "    from .jobs import parse_time\n",
    "agent.py": "",
    "paths.py": "",
}


def test_the_old_flat_layout_fails(tmp_path):
    assert violations(make_tree(tmp_path, OLD_LAYOUT), layers=OLD_LAYERS, verbs=()) == [
        "orch_wrapper/ui.py:3 imports orch_wrapper.jobs (ui may import only config/errors)",
        "orch_wrapper/ui.py:7 imports orch_wrapper.jobs (ui may import only config/errors)",
        "import circle: orch_wrapper/fleet.py:5 imports orch_wrapper.runner -> "
        "orch_wrapper/runner.py:1 imports orch_wrapper.ssh -> orch_wrapper/ssh.py:1 imports orch_wrapper.fleet",
        "import circle: orch_wrapper/jobs.py:1 imports orch_wrapper.ui -> "
        "orch_wrapper/ui.py:3 imports orch_wrapper.jobs",
    ]
