"""A real single-node Kubernetes (v1.20, built from Debian's source) that runs pods.

`tests/cluster/local-up` / `local-down` drive it, the way hack/local-up-cluster.sh does.
"""
