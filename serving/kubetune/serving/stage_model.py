"""Stage a base model from object storage into a pod-local folder (an init container).

    python -m kubetune.serving.stage_model s3://models/llama-3.1-8b-instruct/ /models/base

Inference pods load models from their own storage, never from a model hub. Only the files a
Hugging Face model folder needs are copied (weights as safetensors, config, tokenizer and
generation files); pickle weights are refused, so nothing user-supplied is unpickled. The
folder appears by an atomic rename, so a crash mid-copy never leaves a half model behind.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import uuid
from pathlib import Path

from kubetune.serving.agent.download import s3_client, split_s3_uri

log = logging.getLogger("kubetune.serving.stage_model")

_ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja", ".tiktoken")
_REFUSED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".py")


def wanted(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.endswith(_ALLOWED_SUFFIXES) and not name.endswith(_REFUSED_SUFFIXES)


def stage(uri: str, dest: Path) -> list[str]:
    """Copy the model at ``uri`` into ``dest``; returns the relative names copied."""
    if (dest / "config.json").exists():
        log.info("%s already staged", dest)
        return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    bucket, prefix = split_s3_uri(uri)
    client = s3_client()
    tmp = dest.parent / f".staging-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    copied: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                if not relative or not wanted(relative):
                    continue
                target = tmp / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(target))
                copied.append(relative)
                log.info("staged %s (%d bytes)", relative, item["Size"])
        if "config.json" not in copied:
            raise SystemExit(f"{uri} holds no config.json: not a Hugging Face model folder")
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(copied)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", help="s3://bucket/prefix/ of the model folder")
    parser.add_argument("dest", type=Path, help="local folder to create")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    files = stage(args.uri, args.dest)
    log.info("staged %d files of %s into %s", len(files), args.uri, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
