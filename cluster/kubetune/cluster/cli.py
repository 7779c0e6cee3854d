"""Command line of the local cluster: ``python -m kubetune.cluster <command>``.

``up``, ``down``, ``status`` and ``env`` manage the cluster behind ``make cluster-up`` and
``make cluster-down``; ``logs`` prints a pod's container log (the ``kubectl logs`` stand-in);
``agent`` and ``supervise`` are the long-running processes ``up`` starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kubetune.cluster import agent as agent_mod
from kubetune.cluster import lifecycle
from kubetune.cluster.podlogs import LogNotFoundError, read_log
from kubetune.cluster.supervisor import SuperviseOptions, supervise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubetune.cluster",
        description="kubetune local cluster (test and demo infrastructure, not a distribution)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default: $KUBETUNE_STATE_DIR or <repo>/.kubetune)",
    )
    # --state-dir is accepted before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", dest="sub_state_dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", parents=[common], help="start the local cluster in the background (idempotent)"
    )
    up.add_argument("--images-dir", type=Path, action="append", default=[])
    up.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu of the GPU node")
    up.add_argument("--timeout", type=float, default=lifecycle.UP_TIMEOUT)
    sub.add_parser(
        "down", parents=[common], help="stop the local cluster and remove its state (idempotent)"
    )
    sub.add_parser("status", parents=[common], help="is it up? endpoints and processes")
    sub.add_parser("env", parents=[common], help="print the export lines of .kubetune/env")
    logs = sub.add_parser("logs", parents=[common], help="print a pod's container log")
    logs.add_argument("pod", help="NAMESPACE/POD or POD (namespace default)")
    logs.add_argument("-c", "--container", default=None)
    logs.add_argument("-p", "--previous", action="store_true")
    logs.add_argument("--tail", type=int, default=None)
    agent = sub.add_parser("agent", help="run the node agent in the foreground")
    agent_mod.add_arguments(agent)
    sv = sub.add_parser("supervise", parents=[common], help="internal: the process `up` starts")
    sv.add_argument("--images-dir", type=Path, action="append", default=[])
    sv.add_argument("--gpus", type=int, default=1)
    sv.add_argument("--agent-arg", action="append", default=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = getattr(args, "sub_state_dir", None) or args.state_dir
    state_dir = (chosen or lifecycle.default_state_dir()).resolve()
    if args.command == "agent":
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return agent_mod.run_agent(agent_mod.config_from_args(args))
    if args.command == "supervise":
        return supervise(
            SuperviseOptions(
                state_dir=state_dir,
                images_dirs=[p.resolve() for p in args.images_dir],
                gpus=args.gpus,
                agent_args=list(args.agent_arg),
            )
        )
    if args.command == "logs":
        namespace, _, name = args.pod.rpartition("/")
        try:
            text = read_log(
                state_dir / "logs" / "pods",
                namespace=namespace or "default",
                name=name,
                container=args.container,
                previous=args.previous,
                tail=args.tail,
            )
        except LogNotFoundError as err:
            print(err, file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    if args.command == "up":
        outcome = lifecycle.up(
            state_dir,
            images_dirs=[p.resolve() for p in args.images_dir],
            gpus=args.gpus,
            timeout=args.timeout,
        )
    elif args.command == "down":
        outcome = lifecycle.down(state_dir)
    elif args.command == "status":
        outcome = lifecycle.status(state_dir)
    else:
        outcome = lifecycle.env(state_dir)
    print(outcome.message)
    return outcome.code
