"""The adapter agent: a sidecar in every inference pod, between the pod's Service port and
its engine (vLLM or the reference engine).

Flow: ``watch`` follows the Deployment's desired-set ConfigMap; ``sync`` asks ``plan`` (pure)
what to do and does it: ``download`` fetches and ``verify`` checks each version, the
``engine_client`` loads it under its versioned name and unloads drained ones; ``router``
serves the OpenAI API and rewrites stable adapter names to the version ``routing`` points at,
counting requests in ``inflight``; ``reporter`` writes the per-pod state annotation.
``config`` reads the environment; ``desired`` parses the contract's ``desired.json``.
"""
