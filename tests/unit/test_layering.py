"""Dependencies point one way: only the engine imports llama_cpp, and the engine imports no layer
above it; importing the server does not load llama.cpp; the TUI never imports the server."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)  # and `from localgw import chat` as localgw.chat:
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_engine_imports_llama_cpp():
    for path in (ROOT / "localgw").rglob("*.py"):
        if any(n.split(".")[0] == "llama_cpp" for n in imports_of(path)):
            assert path.parent.name == "engine", f"{path} imports llama_cpp"


def test_chat_layer_is_pure():
    for path in (ROOT / "localgw" / "chat").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.startswith(("localgw.server", "localgw.cli",
                                                             "starlette", "uvicorn", "llama_cpp"))}
        assert not bad, f"{path} imports {bad}"


def test_server_does_not_import_llama_cpp_or_cli():
    for path in (ROOT / "localgw" / "server").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.startswith(("llama_cpp", "localgw.cli",
                                                             "localgw.engine.runner"))}
        assert not bad, f"{path} imports {bad}"


def test_tui_talks_http_only():
    for path in (ROOT / "tui").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.startswith(("localgw.engine", "llama_cpp"))}
        assert not bad, f"{path} imports {bad}"


def test_engine_imports_no_layer_above_it():
    for path in (ROOT / "localgw" / "engine").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.startswith(("localgw.chat", "localgw.server",
                                                             "localgw.protocols", "localgw.cli"))}
        assert not bad, f"{path} imports {bad}"


def test_importing_the_server_does_not_load_llama_cpp():
    code = "import sys, localgw.server.app; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def package_of(path: Path) -> str:
    """The room a module belongs to: localgw's subpackage, or the top-level module's own name."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return "tui" if parts[0] == "tui" else parts[1]


def package_graph() -> dict[str, set[str]]:
    rooms = {package_of(p) for p in (ROOT / "localgw").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in [*(ROOT / "localgw").rglob("*.py"), *(ROOT / "tui").rglob("*.py")]:
        src = package_of(path)
        targets = {n.split(".")[1] for n in imports_of(path) if n.startswith("localgw.")}
        graph.setdefault(src, set()).update(t for t in targets if t in rooms and t != src)
    return graph


def test_no_cycles_between_packages():
    """localgw's packages and top-level modules import each other one way only (function-local
    imports count): every room can be read, tested and replaced from the bottom up."""
    graph = package_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            raise AssertionError("import cycle: " + " → ".join(cycle))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_graph_sees_the_known_arrows():
    graph = package_graph()
    assert {"chat", "engine", "protocols", "upstreams"} <= graph["server"]
    assert "engine" in graph["chat"] and "server" in graph["cli"]
