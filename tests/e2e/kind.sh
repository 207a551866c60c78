#!/usr/bin/env bash
# The end-to-end tier on kind, for hosts with Docker: creates a kind cluster, builds the
# images with docker (operator, worker, example app, Django app), loads them into the node,
# and runs tests/e2e against it. Needs docker, kind, kubectl and helm on PATH.
# `KEEP_CLUSTER=1` keeps the cluster afterwards.
# test_getting_started.py runs the README's "Getting started on your cluster" block here as on
# the real node, with docker building its images and `kind load` standing for `docker push`.
#   bash tests/e2e/kind.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${KIND_CLUSTER_NAME:-kubetasks-e2e}"

for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || { echo "kind.sh: '$tool' is not on PATH" >&2; exit 1; }
done

kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --wait 120s
kubeconfig="$(mktemp)"
kind get kubeconfig --name "$name" > "$kubeconfig"
cleanup() {
    rm -f "$kubeconfig"
    [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$name"
}
trap cleanup EXIT

docker build -t kubetasks/operator:dev .
docker build -f worker_image/Dockerfile -t kubetasks/worker:dev .
docker build -f examples/app/Dockerfile --build-arg WORKER_IMAGE=kubetasks/worker:dev \
    -t kubetasks/example-app:dev .
docker build -f examples/django_app/Dockerfile --build-arg WORKER_IMAGE=kubetasks/worker:dev \
    -t kubetasks/django-app:dev .
docker tag kubetasks/example-app:dev kubetasks/example-app:next
docker pull postgres:16
for image in kubetasks/operator:dev kubetasks/worker:dev kubetasks/example-app:dev \
             kubetasks/example-app:next kubetasks/django-app:dev postgres:16; do
    kind load docker-image --name "$name" "$image"
done

KUBECONFIG="$kubeconfig" KIND_CLUSTER_NAME="$name" KUBETASKS_E2E_PROVIDER=kind python3 -m pytest tests/e2e "$@"
