"""The kubetune version, stamped into run configs, manifests and the operator's metrics."""

__version__ = "0.1.0"
