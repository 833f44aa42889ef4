#!/bin/bash
# Installs the JupyterHub peer for `voxhub bench instances --jupyterhub` under PREFIX
# (default /opt/voxhub/bench-jupyterhub): a virtual environment (from /usr/bin/python3)
# with jupyterhub and the same JupyterLab as voxhub's instances (PyPI), and
# configurable-http-proxy (npm, in PREFIX/node, not global). Idempotent.
#
#   jupyterhub_install.sh [PREFIX]
#
# Versions are pinned to the measured ones; override with JUPYTERHUB_SPEC,
# JUPYTERLAB_SPEC or CHP_SPEC (e.g. CHP_SPEC=configurable-http-proxy@4.6.3 for node 18).
set -euo pipefail
PREFIX=${1:-/opt/voxhub/bench-jupyterhub}
JUPYTERHUB_SPEC=${JUPYTERHUB_SPEC:-jupyterhub==6.1.1}
JUPYTERLAB_SPEC=${JUPYTERLAB_SPEC:-jupyterlab==4.6.6}
CHP_SPEC=${CHP_SPEC:-configurable-http-proxy@5.3.0}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "configurable-http-proxy needs node and npm: apt-get install -y nodejs npm" >&2
  exit 3
fi
# CHP 5 wants node 20 or newer; Debian 12's own nodejs is 18.
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ] && [ "$CHP_SPEC" = configurable-http-proxy@5.3.0 ]; then
  CHP_SPEC=configurable-http-proxy@4.6.3
fi
mkdir -p "$PREFIX/node"
[ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q "$JUPYTERHUB_SPEC" "$JUPYTERLAB_SPEC" requests
want=${CHP_SPEC##*@}
have=$(node -p "require('$PREFIX/node/node_modules/configurable-http-proxy/package.json').version" 2>/dev/null || true)
if [ "$have" != "$want" ] || [ ! -x "$PREFIX/node/node_modules/.bin/configurable-http-proxy" ]; then
  npm install --prefix "$PREFIX/node" --no-audit --no-fund "$CHP_SPEC"
fi
echo "jupyterhub $("$PREFIX/venv/bin/jupyterhub" --version)" \
     "| jupyterlab $("$PREFIX/venv/bin/jupyter-lab" --version)" \
     "| configurable-http-proxy $("$PREFIX/node/node_modules/.bin/configurable-http-proxy" --version)" \
     "| node $(node --version)"
