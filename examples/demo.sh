#!/usr/bin/env bash
# Bring kubetasks up on this machine and run its main job (see examples/demo.py): real images
# on a real node, the operator from the chart, workers scaling from zero and back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash localcluster/install-host-tools.sh
python3 -m pip install -q -e '.[operator,dev]'
bash localcluster/build-binaries.sh
exec python3 -m examples.demo "$@"
