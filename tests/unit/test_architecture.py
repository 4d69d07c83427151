"""The layout rules of docs/architecture.md, checked: imports point down, no cycles, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "services", "core", "processing", "audio", "shared")
# What each layer may import from the product (besides itself).
ALLOWED = {
    "api": {"services", "core", "processing", "audio", "shared"},
    "services": {"core", "processing", "audio", "shared"},
    "core": {"shared"},
    "processing": {"core", "shared"},  # typed values only: token ids, voices
    "audio": {"shared"},
    "shared": set(),
}
# services/ sub-packages (and its top modules), top to bottom: each imports only what stands below it, so none
# imports another that imports it back (docs/architecture.md, "services/").
SERVICE_LAYERS = (
    "deployment",  # the composition root: loads the models, builds the bundle, Modal's lifecycle
    "model_status",  # the loaded model as the edge sees it: state, health, ServingModel, VoicePinning
    "sessions",  # WebSocket sessions over the pipeline
    "jobs",  # long-form jobs: documents read into chapters, rendered in the background class, joined as a book
    "access",  # keys checked, limits, what a request holds and settles
    "usage",  # credits, the request log, accounting
    "continuity",  # recent requests, stitching (reaches the pipeline's ContinuityHooks)
    "voice_library",  # custom voices, reference encodes (reaches the pipeline's CustomVoices)
    "pronunciation",  # pronunciation dictionaries (reaches the pipeline's PronunciationLexicons)
    "pipeline",  # one request's synthesis, through PipelineResources
    "device",  # the device's one owner: the codec scheduler, admission
    "keys",  # API-key records and their stores
    "database",
    "errors",  # plain modules every room may use
)
MAX_LINES = 500
# A longer module says why in its docstring, with these words.
LONG_MODULE_MARKER = "Longer than 500 lines because"
# No module is longer than this, whatever its docstring says.
HARD_MAX_LINES = 700


def product_modules() -> dict[str, Path]:
    modules = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Product modules `path` imports, lazily or not (TYPE_CHECKING-only imports included: they are edges too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_imports_point_down() -> None:
    modules = product_modules()
    wrong = []
    for name, path in modules.items():
        layer = name.split(".")[0]
        if layer == "app":
            continue
        for target in imports_of(path, modules):
            target_layer = target.split(".")[0]
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_service_subpackages_import_one_way() -> None:
    modules = product_modules()
    rank = {name: i for i, name in enumerate(SERVICE_LAYERS)}
    wrong = []
    for name, path in modules.items():
        parts = name.split(".")
        if parts[0] != "services" or len(parts) < 2:
            continue
        assert parts[1] in rank, f"{name}: add its room to SERVICE_LAYERS"
        for target in imports_of(path, modules):
            target_parts = target.split(".")
            if target_parts[0] != "services" or len(target_parts) < 2 or target_parts[1] == parts[1]:
                continue
            if rank[target_parts[1]] <= rank[parts[1]]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_the_pipeline_never_holds_the_runtime() -> None:
    """The pipeline and the rooms above it get `PipelineResources` / `ModelSource`, never `ModelRuntime`."""
    holders = [
        name
        for name, path in product_modules().items()
        if name.startswith("services.")
        and not name.startswith("services.deployment")
        and "ModelRuntime" in path.read_text(encoding="utf-8")
    ]
    assert not holders, holders


# The one api module that builds the app, and so holds the runtime (its start-up wiring).
API_START_UP = "api.app"


def test_the_edge_never_holds_the_runtime() -> None:
    """Routes and socket front ends see narrow typed interfaces (`ServingModel`, `VoicePinning`): no api module but
    the start-up imports services/deployment or names `ModelRuntime`."""
    modules = product_modules()
    wrong = []
    for name, path in modules.items():
        if not name.startswith("api.") or name == API_START_UP:
            continue
        if "ModelRuntime" in path.read_text(encoding="utf-8"):
            wrong.append(f"{name} names ModelRuntime")
        wrong += [f"{name} -> {t}" for t in imports_of(path, modules) if t.startswith("services.deployment")]
    assert not wrong, wrong


# What a socket session is made of: only the session entrance (services/sessions/entrance.py) builds these.
SESSION_PARTS = {"WsSession", "Outbox", "AccessGate"}


def session_part_builds(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that build a session part, by its own name, an alias of it (`import WsSession as S`) or through its
    module (`ws_session.WsSession(...)`): (line, the part's name)."""
    aliases = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name in SESSION_PARTS
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and aliases.get(node.func.id, node.func.id) in SESSION_PARTS:
            found.append((node.lineno, aliases.get(node.func.id, node.func.id)))
        elif isinstance(node.func, ast.Attribute) and node.func.attr in SESSION_PARTS:
            found.append((node.lineno, node.func.attr))
    return found


def test_every_socket_transport_opens_the_one_entrance() -> None:
    """Our WebSocket, the ElevenLabs and Cartesia dialects and the Wyoming server only parse and write their wire
    format: none of them builds a session's parts itself, under any name."""
    built = []
    for name, path in product_modules().items():
        if not name.startswith("api."):
            continue
        for line, part in session_part_builds(ast.parse(path.read_text(encoding="utf-8"))):
            built.append(f"{name}:{line} builds {part}")
    assert not built, built


CONNECTION_LOOP = "api.sockets.loop"


def outbox_starts(tree: ast.AST) -> list[int]:
    """Lines that start a session's outbox writer (`outbox.start()`, `self.outbox.start()`, `session.outbox.start()`):
    the connection loop does, once per connection."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "start":
            owner = node.func.value
            name = (
                owner.attr
                if isinstance(owner, ast.Attribute)
                else owner.id
                if isinstance(owner, ast.Name)
                else ""
            )
            if name.endswith("outbox"):
                lines.append(node.lineno)
    return lines


def test_every_socket_transport_runs_the_one_connection_loop() -> None:
    """The WebSocket dialects and Wyoming supply a transport and their parsing (docs/architecture.md); only the one
    loop (api/sockets/loop.py) starts a connection's writer, reads, budgets and ends it."""
    wrong = [
        f"{name}:{line}"
        for name, path in product_modules().items()
        if name.startswith("api.") and name != CONNECTION_LOOP
        for line in outbox_starts(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not wrong, wrong


def reads_the_runtime(tree: ast.AST) -> list[int]:
    """Lines that read the runtime off an app's state (`request.app.state.runtime`, `app.state.runtime`,
    `getattr(app.state, "runtime")`)."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "runtime"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "state"
        ):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "runtime"
        ):
            lines.append(node.lineno)
    return lines


def test_only_start_up_reads_the_runtime_off_the_app() -> None:
    """Routes get the narrow services `api/deps.py` hands them; only the start-up (`api/app.py`) holds the runtime."""
    wrong = [
        f"{name}:{line}"
        for name, path in product_modules().items()
        if name.startswith("api.") and name != API_START_UP
        for line in reads_the_runtime(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    modules = product_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    cycles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for name in graph:
        if name not in index:
            visit(name)
    assert not cycles, cycles


def test_modules_stay_small_or_say_why() -> None:
    long = []
    for name, path in product_modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > HARD_MAX_LINES:
            long.append(f"{name}: {lines} lines, over the ceiling of {HARD_MAX_LINES} whatever it says")
        elif lines > MAX_LINES and LONG_MODULE_MARKER not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{name}: {lines} lines")
    assert not long, long


# One folder per protocol under api/protocols, the same file name for the same role: `routes.py` (HTTP routes),
# `socket.py` (the WebSocket route), `requests.py` (messages in), `responses.py` (messages out). Wyoming speaks
# TCP, not HTTP: its server and connection handler stand where the routes would.
# Native and OpenAI answer in the service's own error envelope (api/errors.py, OpenAI's shape), so neither has an
# errors.py; a vendor dialect's refusals in that vendor's shapes are its errors.py.
PROTOCOL_ROLES = {
    "native": {"routes.py", "socket.py", "requests.py", "responses.py"},
    "openai": {"routes.py", "requests.py"},
    "elevenlabs": {"routes.py", "socket.py", "requests.py", "responses.py", "errors.py"},
    "cartesia": {"routes.py", "socket.py", "requests.py", "responses.py", "errors.py"},
    "wyoming": {"server.py", "handler.py", "responses.py"},
}


def test_each_protocol_has_its_role_files() -> None:
    protocols = ROOT / "api" / "protocols"
    folders = {p.name for p in protocols.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(PROTOCOL_ROLES), "a new protocol folder: add its roles to PROTOCOL_ROLES"
    for name, roles in PROTOCOL_ROLES.items():
        missing = sorted(r for r in roles if not (protocols / name / r).exists())
        assert not missing, f"api/protocols/{name} lacks {missing}"


def test_no_protocol_imports_another() -> None:
    """Protocols are peers: what several of them share (the HTTP answer, the field checks, the refusals' table) lives in
    api/http/, the socket plumbing in api/protocols/common.py, never in one protocol's folder that others import."""
    modules = product_modules()
    wrong = []
    for name, path in modules.items():
        parts = name.split(".")
        if parts[:2] != ["api", "protocols"] or len(parts) < 3 or parts[2] not in PROTOCOL_ROLES:
            continue
        for target in imports_of(path, modules):
            other = target.split(".")
            if other[:2] == ["api", "protocols"] and len(other) > 2 and other[2] in PROTOCOL_ROLES:
                if other[2] != parts[2]:
                    wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_no_module_is_named_wire() -> None:
    """Outgoing messages are `responses.py`; `wire.py` read as parsing. services/sessions/wire.py (the
    `SessionWire` protocol every transport implements) is the one kept."""
    found = sorted(
        str(p.relative_to(ROOT))
        for package in PACKAGES
        for p in (ROOT / package).rglob("wire.py")
        if p != ROOT / "services" / "sessions" / "wire.py"
    )
    assert not found, found
