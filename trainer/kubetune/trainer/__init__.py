"""The kubetune PEFT trainer: golden examples in, a verified adapter out.

Entry point: ``python -m kubetune.trainer --config /etc/kubetune/run-config.json``. The flow is
``run`` (orchestration) -> ``staging`` (inputs to local disk) -> ``data`` (parse, validate,
clean, split) -> ``tokenization`` / ``packing`` -> ``model`` -> ``loop`` (train, checkpoint,
progress) -> ``evaluate`` -> ``publish`` (adapter files, then ``manifest.json`` last).
"""
