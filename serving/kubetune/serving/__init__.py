"""kubetune serving: what runs inside an inference pod.

Two programs share this package:

- ``kubetune.serving.engine``: a reference OpenAI-compatible CPU engine, one base model with
  LoRA adapters loaded and unloaded at runtime through vLLM's runtime LoRA API;
- ``kubetune.serving.agent``: the adapter agent sidecar, which syncs the desired adapter set
  from the cluster into the engine (vLLM or the reference engine) and routes stable adapter
  names to versioned ones.

``kubetune.serving.protocol`` holds the wire shapes both speak. The agent never imports the
engine (the agent image path must not need torch).
"""
