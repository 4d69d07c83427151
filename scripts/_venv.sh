# Sourced by scripts/serve and scripts/test: create .venv and install the project (idempotent).
# torch is installed first as the CPU build pinned below, so the project's `torch>=2.13` range is already
# satisfied and pip never pulls the multi-GB CUDA build onto a CPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_SPEC="${TTS_TORCH_SPEC:-torch==2.13.0}"

# pip prints one harmless warning per package for this machine's extra local index; keep the log readable.
quiet_pip() {
  "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

ensure_venv() {
  local extras="$1"  # "" for serving (scripts/serve), "dev" for the test suite
  if [ ! -x "$PY" ]; then
    echo "[setup] creating $VENV"
    python3 -m venv "$VENV" || return 1
    quiet_pip install -q --upgrade pip || return 1
  fi
  if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC (CPU)"
    quiet_pip install -q "$TORCH_SPEC" || return 1
  fi
  local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$extras"
  if [ ! -f "$stamp" ]; then
    echo "[setup] installing the project${extras:+ with extras [$extras]}"
    quiet_pip install -q -e "$ROOT${extras:+[$extras]}" || return 1
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}
