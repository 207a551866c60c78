#!/usr/bin/env bash
# Installs the Debian packages that the real node and the image builds need, where missing:
# PostgreSQL's server, containerd, runc, the CNI plugins, buildah, mmdebstrap and a C compiler
# (for the pause image), and promtool (the chart's alert rules are checked with it). Safe to run
# again: installs nothing when all are there.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
for pair in containerd:containerd runc:runc buildah:buildah mmdebstrap:mmdebstrap gcc:gcc \
            iptables:iptables ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v promtool >/dev/null || need+=(prometheus)
dpkg -s libc6-dev >/dev/null 2>&1 || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "install-host-tools: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
