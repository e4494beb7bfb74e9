#!/usr/bin/env bash
# The project's two entry points, usable on a fresh machine with only Python 3.11:
#   ./run.sh dashboard   install what is needed, build the demo index on first start, open the UI (127.0.0.1)
#   ./run.sh dashboard --team   the same on every interface, sign-in required (README: "Serving it to a team")
#   ./run.sh test        install what is needed (Chromium for the browser tests too), run every test
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
  fi
  local want have
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "[setup] installing Python packages (first run takes a few minutes)"
    # torch first, pinned, so no other package can pull a different build
    "$VENV/bin/pip" install --progress-bar on "$(grep -E '^torch==' requirements.txt)"
    "$VENV/bin/pip" install --progress-bar on -r requirements.txt
    echo "$want" > "$VENV/.requirements.sha256"
  fi
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the end-to-end browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] could not install chromium; the browser tests will report it"
  else
    echo "[setup] chromium is not installed and this user cannot apt-get it; the browser tests will report it"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  dashboard)
    ensure_venv
    export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
    if [ ! -f cache/demo.duckdb ] || [ backend/demo/artifacts/sae/sae_weights.safetensors -nt cache/demo.duckdb ]; then
      echo "[setup] building the demo feature index (first start, or new demo weights; a few minutes)"
      "$VENV/bin/python" -m backend index --source demo --out cache/demo.duckdb
    fi
    # loopback unless team mode: only this machine's user can reach an unauthenticated dashboard
    address=127.0.0.1
    if [ "${1:-}" = "--team" ]; then export SAE_EXPLORER_TEAM=1; shift; fi
    case "${SAE_EXPLORER_TEAM:-}" in 1|true|yes|on) address=${ADDRESS:-0.0.0.0}; echo "[team] listening on $address; every page asks for sign-in" ;; esac
    exec "$VENV/bin/python" -m streamlit run app.py --server.headless true --server.address "$address" \
      --server.port "${PORT:-8501}" --browser.gatherUsageStats false "$@"
    ;;
  test)
    ensure_venv
    ensure_chromium
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled PYTHONHASHSEED=0
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh dashboard | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
