# Sourced by scripts/serve and scripts/test: create .venv and install the project (idempotent).
# torch is installed first as the CPU build pinned below, so the project's `torch>=2.13` range is already
# satisfied and pip never pulls the multi-GB CUDA build onto a CPU machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_SPEC="${TTS_TORCH_SPEC:-torch==2.13.0}"

# pip prints one harmless warning per package for this machine's extra local index, and setuptools a boxed
# deprecation wall about the licence metadata each time it builds the project; keep the log readable. The awk drops
# the warning's line, its box (up to the second `!!` line) and the source line Python's warnings print after it.
quiet_pip() {
  "$PY" -m pip "$@" 2>&1 | awk '
    /is ignored: it is neither a file nor a directory/ { next }
    /`project\.license` as a TOML table is deprecated|License classifiers are deprecated/ { skip = 1; bangs = 0; next }
    skip == 1 { if ($0 ~ /^[[:space:]]*!![[:space:]]*$/ && ++bangs == 2) skip = 2; next }
    skip == 2 { skip = 0; if ($0 ~ /^[[:space:]]+[A-Za-z_.]+\(/) next }
    { print; fflush() }'
}

# Run "$@", printing "[setup] LABEL: still installing (N s)" every PROGRESS_EVERY_S (whole) seconds until it ends, so a
# first install (torch alone takes a minute or more) is never a silent minute. Returns the command's status.
with_progress() {
  local label="$1" every="${PROGRESS_EVERY_S:-15}"
  shift
  "$@" &
  local work=$!
  (
    nap="" waited=0
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM  # `wait` lets the trap run at once and take its sleep along
    while :; do
      sleep "$every" &
      nap=$!
      wait "$nap"
      waited=$((waited + every))
      echo "[setup] $label: still installing (${waited} s)"
    done
  ) &
  local ticker=$! status=0
  wait "$work" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return "$status"
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
    with_progress "torch" quiet_pip install -q "$TORCH_SPEC" || return 1
  fi
  # One stamp per pyproject.toml and extras. A dev install holds everything serving needs, so scripts/serve after
  # scripts/test accepts it, and scripts/test after scripts/serve finds its own stamp still there (no reinstall).
  local base="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  local stamp="$base-$extras"
  if [ ! -f "$stamp" ] && [ ! -f "$base-dev" ]; then
    echo "[setup] installing the project${extras:+ with extras [$extras]}"
    with_progress "the project" quiet_pip install -q -e "$ROOT${extras:+[$extras]}" || return 1
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}
