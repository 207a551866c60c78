"""Start the test cluster by hand: ``python -m localcluster.up`` from the repository root.

Runs the control plane and the local kubelet until Ctrl-C, and prints the
``export KUBECONFIG=...`` line that points kubectl (or helm, or the operator)
at it. Build the binaries first with ``bash localcluster/build-binaries.sh``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from .controlplane import ControlPlane, ControlPlaneError
from .process_kubelet import IMAGE_ENTRYPOINTS, LocalKubelet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.up", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, help="where certificates, data and logs go (default: a new temp dir)"
    )
    parser.add_argument("--no-kubelet", action="store_true", help="run the control plane only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kubetasks-cluster-"))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with ControlPlane.start(workdir=workdir) as cluster:
            kubelet = None
            if not args.no_kubelet:
                kubelet = LocalKubelet(
                    cluster.api_client(), log_dir=workdir / "pods", entrypoints=IMAGE_ENTRYPOINTS
                )
                kubelet.start()
            try:
                print(
                    f"Kubernetes {cluster.binaries.kubernetes_version} is up at {cluster.server}", flush=True
                )
                print(f"logs and data: {workdir}")
                if kubelet is not None:
                    print(f"node {kubelet.node_name}: pod logs in {kubelet.log_dir}/<namespace>/<pod>/")
                print(f"\nexport KUBECONFIG={cluster.kubeconfig}\n", flush=True)
                print("Ctrl-C stops everything.", flush=True)
                stop.wait()
            finally:
                if kubelet is not None:
                    kubelet.stop()
    except ControlPlaneError as error:
        print(error, file=sys.stderr)
        return 1
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
