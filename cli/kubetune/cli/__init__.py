"""The ``kubetune`` command: the tools an ML engineer reaches for around FineTuneJobs.

Layout: ``main`` (the command group, global options, the one place errors become one line),
``session`` (lazy cluster and object-store access for one invocation), ``kube`` and ``store``
(thin I/O over lightkube and boto3, translating their errors), ``views``, ``metrics`` and
``finetunejob`` (pure: tables, curves, manifests), ``commands/`` (one module per command
family). Dataset checks reuse ``kubetune.trainer.data``, the trainer's own code.
"""
