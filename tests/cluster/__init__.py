"""The cluster test tier: a real control plane on loopback and a local kubelet (see README.md)."""
