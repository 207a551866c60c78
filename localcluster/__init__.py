"""A Kubernetes cluster on this machine for the tests, the demo and the benchmarks.

- ``controlplane``: etcd, kube-apiserver and kube-controller-manager on loopback.
- ``process_kubelet``: a fast emulated node that runs each container as a local process.
- ``postgres``: a throwaway PostgreSQL server.
- ``operator``: the kubetasks operator as a local process, TaskQueue manifests, typed readers.
- ``sample_tasks``: the tasks the workers of the tests, demo and benchmarks run.

The binaries come from ``bash localcluster/build-binaries.sh``.
"""
