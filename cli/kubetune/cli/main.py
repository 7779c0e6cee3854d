"""``kubetune``: the command group, its global options, and the one place errors are printed.

Every command raises ``CliError`` for what a user can fix; here it becomes ``error: <one
line>`` on stderr and the error's exit code, never a traceback. Set ``KUBETUNE_DEBUG=1`` to
see the traceback of an unexpected failure.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from kubetune.api.version import __version__
from kubetune.cli.commands.adapters import adapters
from kubetune.cli.commands.chat import chat
from kubetune.cli.commands.data import data
from kubetune.cli.commands.logs import logs
from kubetune.cli.commands.metrics import metrics
from kubetune.cli.commands.runs import describe, get, list_
from kubetune.cli.commands.submit import submit
from kubetune.cli.commands.watch import watch
from kubetune.cli.errors import EXIT_ERROR, EXIT_INTERRUPTED, CliError
from kubetune.cli.session import Session


def fail(message: str, code: int) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class KubetuneGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as err:
            fail(err.message, err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx else "kubetune"
            fail(f"{err.format_message()} (see `{where} --help`)", EXIT_ERROR)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as err:
            if os.environ.get("KUBETUNE_DEBUG"):
                raise
            fail(
                f"unexpected {type(err).__name__}: {err} (KUBETUNE_DEBUG=1 shows the traceback)",
                EXIT_ERROR,
            )
        return None


@click.group(cls=KubetuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubetune")
@click.option(
    "--kubeconfig",
    metavar="PATH",
    help="Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
)
@click.option("--context", metavar="NAME", help="Kubeconfig context (default: current).")
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    envvar="KUBETUNE_NAMESPACE",
    help="Namespace (default: $KUBETUNE_NAMESPACE, then the context's namespace).",
)
@click.option(
    "--s3-endpoint",
    metavar="URL",
    help="Object-store endpoint (default: $AWS_ENDPOINT_URL, then the object's spec.storage).",
)
@click.pass_context
def main(
    ctx: click.Context,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    s3_endpoint: str | None,
) -> None:
    """Fine-tune and serve LLM adapters on your Kubernetes cluster.

    \b
    Check a dataset:      kubetune data check train.jsonl
    Start a fine-tune:    kubetune submit support --base-model s3://m/ --train train.jsonl
    Follow it:            kubetune watch support
    Compare versions:     kubetune adapters support
    Talk to the adapter:  kubetune chat support "How do I move my plan?"

    Exit codes: 0 ok; 1 the dataset has problems or the run failed; 2 the command could not
    do its job (usage, unknown name, unreachable cluster or object store); 3 watch timed out.
    """
    session = Session(
        kubeconfig=kubeconfig, context=context, namespace_flag=namespace, s3_endpoint=s3_endpoint
    )
    ctx.obj = session
    ctx.call_on_close(session.close)


for command in (data, submit, list_, get, describe, watch, logs, metrics, adapters, chat):
    main.add_command(command)
