"""Local cluster for tests and the demo: a real Kubernetes control plane built from source.

This is test and demo infrastructure, not a Kubernetes distribution.
"""
