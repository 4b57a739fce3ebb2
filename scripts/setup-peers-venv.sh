#!/usr/bin/env bash
# Set up the peer optimizers of the benchmark (hubtune.bench.peers).
#
#   scripts/setup-peers-venv.sh                 create (or reuse) Quick-Tune-Tool's own venv;
#                                               prints its python on the last line
#   scripts/setup-peers-venv.sh --bench-into V  install DEHB, SMAC3 and Optuna into hubtune's
#                                               venv V (the `bench` extra + DEHB without deps)
#
# Quick-Tune-Tool (PyPI `quicktunetool`, import `qtt`) pins numpy<2 and scikit-learn==1.5.0
# and imports `requests` without declaring it, which clashes with hubtune's environment
# (numpy 2), so it gets its own venv and hubtune drives it across a process boundary
# (hubtune/bench/peers/qtt_worker.py). torch==2.14.1 / torchvision==0.29.1 are installed
# first: with older torch builds the only torchvision wheels available fail to import.
# The venv is cached outside the clone, keyed by a hash of the pinned spec below, so
# repeated runs reuse it. Override the location with HUBTUNE_QTT_VENV.
#
# DEHB 0.1.2 declares numpy<2 but runs on numpy 2; installing it normally would downgrade
# numpy in hubtune's venv, so it is installed with --no-deps (its dependencies are in the
# `bench` extra of pyproject.toml).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ "${1:-}" = "--bench-into" ]; then
  venv=${2:?usage: setup-peers-venv.sh --bench-into VENV}
  "$venv/bin/pip" install -q -c requirements/torch.txt -e ".[bench]" >&2
  "$venv/bin/pip" install -q --no-deps "dehb==0.1.2" >&2
  "$venv/bin/python" -c "import dehb, smac, optuna" >&2
  echo "$venv"
  exit 0
fi

py=${PYTHON:-python3}
spec="torch==2.14.1 torchvision==0.29.1 | quicktunetool==0.0.4 requests"
hash=$(printf '%s' "$spec" | sha256sum | cut -c1-12)
venv=${HUBTUNE_QTT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hubtune/qtt-venv-$hash}
if [ ! -f "$venv/.complete" ]; then
  echo "setting up $venv (first run: installs torch and quicktunetool)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  pins=$(mktemp)
  trap 'rm -f "$pins"' EXIT
  printf 'torch==2.14.1\ntorchvision==0.29.1\n' >"$pins"
  "$venv/bin/pip" install -q -r "$pins" >&2
  "$venv/bin/pip" install -q -c "$pins" "quicktunetool==0.0.4" requests >&2
  "$venv/bin/python" -c "import qtt, gpytorch, requests, numpy; assert numpy.__version__ < '2'" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
