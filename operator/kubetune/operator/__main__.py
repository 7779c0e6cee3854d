"""Entry point of the operator image: ``python -m kubetune.operator``.

Runs Kopf standalone (one replica, no peering) with the liveness endpoint on, watching all
namespaces or the ones in KUBETUNE_WATCH_NAMESPACES.
"""

from __future__ import annotations

import argparse
import logging

import kopf

from kubetune.operator import handlers, handlers_serving  # noqa: F401 - registers handlers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kubetune.operator", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = handlers.SETTINGS
    namespaces = list(settings.watch_namespaces)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
