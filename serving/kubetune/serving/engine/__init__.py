"""The reference engine: an OpenAI-compatible CPU server with runtime LoRA loading.

Run it with ``python -m kubetune.serving.engine --model DIR --served-model-name NAME``. It
speaks the same endpoints, request bodies and status codes as vLLM's OpenAI server with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, so the adapter agent drives both the same way.

Modules: ``adapters`` (pure checks of an adapter folder), ``requests`` (pure parsing of
OpenAI request bodies), ``model`` (the base model and its adapters, owned by one thread),
``generation`` (the decode loop), ``app`` (HTTP routes), ``__main__`` (command line).
"""
