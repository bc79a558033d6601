#!/usr/bin/env bash
# The container's install and start steps, in one script the Dockerfile runs and CI tests.
#
#   deploy/container.sh install APP     install pentad-APP (+ serve extra) from uv.lock into .venv
#   deploy/container.sh serve APP RUN   serve the trained run folder RUN on $HOST:$PORT (0.0.0.0:8000)
#
# Run from the repository root (the image's /app). PENTAD_API_KEY, if set, is required by the server.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:?usage: deploy/container.sh install APP | serve APP RUN}"
app="${2:?name the app: vision, medseg, recsys, traffic or rl}"
case "$app" in vision|medseg|recsys|traffic|rl) ;; *) echo "unknown app: $app" >&2; exit 2 ;; esac

case "$action" in
  install)
    # Only this app's package and its dependencies, exactly as locked; no dev tools. The image
    # compiles the bytecode once (COMPILE=1) so that every start is fast.
    compile=()
    if [ "${COMPILE:-0}" = "1" ]; then compile=(--compile-bytecode); fi
    uv sync --locked --no-dev --no-editable --package "pentad-$app" --extra serve "${compile[@]}"
    ;;
  serve)
    run="${3:?give the trained run folder to serve}"
    exec .venv/bin/pentad-"$app" serve --run "$run" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
      --backend "${BACKEND:-onnx}"
    ;;
  *)
    echo "unknown action: $action (install or serve)" >&2
    exit 2
    ;;
esac
