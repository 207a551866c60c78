#!/usr/bin/env bash
# Bring kubetasks up on this machine and run its main job (see examples/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[operator,dev]'
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH  # the worker pods' entrypoint is the kubetasks script
bash tests/cluster/build-binaries.sh
exec python3 -m examples.demo
