"""Command line of the reference engine.

    python -m kubetune.serving.engine --model /models/tiny --served-model-name tiny \\
        --host 127.0.0.1 --port 8001 --max-lora-rank 64

Flags follow vLLM's names where they mean the same thing (``--served-model-name``,
``--max-lora-rank``, ``--lora-modules name=path``), so a pod spec reads the same for both.
The model loads before the port opens: ``/health`` answers only once the engine can serve.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
import uvicorn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubetune.serving.engine", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="local Hugging Face model folder")
    parser.add_argument(
        "--served-model-name", default=None, help="name clients send (default: folder name)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--max-lora-rank", type=int, default=64, help="refuse adapters of a larger rank"
    )
    parser.add_argument(
        "--lora-modules",
        nargs="*",
        default=[],
        metavar="NAME=PATH",
        help="adapters to load at startup (as vLLM's flag)",
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    for module in args.lora_modules:
        if "=" not in module:
            parser.error(f"--lora-modules expects NAME=PATH, got {module!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Models load from the pod's own storage only: never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Imported late so the offline switches above are set before transformers reads them.
    from kubetune.serving.engine.app import create_app  # noqa: PLC0415
    from kubetune.serving.engine.model import ModelRegistry  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    served = args.served_model_name or args.model.resolve().name

    def load() -> ModelRegistry:
        return ModelRegistry.load(
            args.model,
            served_name=served,
            max_lora_rank=args.max_lora_rank,
            dtype=args.dtype,
            max_model_len=args.max_model_len,
        )

    static = tuple((m.split("=", 1)[0], m.split("=", 1)[1]) for m in args.lora_modules)
    app = create_app(load, static_adapters=static)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
