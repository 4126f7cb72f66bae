"""``main``: parse the command line, set up the output, the log and the client, run the command and turn its
outcome into one exit code (``EXIT_CODES``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

import httpx

from fal_kontext import Kontext, KontextError, MissingCredentialsError, RecoveryPolicy, RetryPolicy

from .completion import answer_completion, print_completion
from .exit_codes import EXIT_AUTH, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, exit_code_for
from .headers import HeaderEcho
from .logs import configure_logging, secrets_of
from .messages import cli_message, cli_words
from .output import Output
from .parser import UsageError, build_parser
from .queue_commands import Interrupted, LookupWatch, report_interrupted
from .server_launch import SERVER_COMMANDS, run_server_command

__all__ = ["main"]


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    answer_completion(parser)  # the shell asks for completions: answered, and the process exits
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in SERVER_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args, rest


def _usage_error(message: str, argv: Sequence[str]) -> int:
    """Report a usage error found before a command runs, in the command's one error style: a short line on stderr,
    and a JSON line on stdout when it is piped (or with --json)."""
    json_lines = "--json" in argv or not sys.stdout.isatty()
    Output(json_lines=json_lines, stdout=sys.stdout, stderr=sys.stderr).error(
        message, UsageError(message), None, EXIT_USAGE
    )
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fal-kontext``; returns the exit code (``EXIT_CODES``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, rest = _parse(parser, argv)
    except UsageError as err:
        return _usage_error(str(err), argv)
    if args.command in SERVER_COMMANDS:
        return run_server_command(args.command, rest, lambda message: _usage_error(message, argv))
    if args.command == "completion":
        return print_completion(args.shell)
    json_lines = args.json or not sys.stdout.isatty()
    out = Output(json_lines=json_lines, stdout=sys.stdout, stderr=sys.stderr, secrets=secrets_of(os.environ))
    try:
        configure_logging(args.verbose, os.environ, sys.stderr)
        retry = RetryPolicy() if args.retries is None else RetryPolicy(max_retries=args.retries)
        args.lookups = LookupWatch(out)
        recovery = RecoveryPolicy(on_lookup=args.lookups)
        if args.absent_after is not None:
            recovery = replace(recovery, absent_after=args.absent_after)
        transport = HeaderEcho(httpx.HTTPTransport(), out.note) if args.headers else None
        args.client_options = {
            "base_url": args.base_url,
            "auth": args.auth,
            "wait_timeout": None,
            "retry": retry,
            "recovery": recovery,
        }
        kontext = Kontext(**args.client_options, transport=transport)
        kontext.check_credentials()  # every command sends a request that needs one: refused before anything
    except CommandError as err:
        out.error(str(err), err, None, err.code)
        return err.code
    except MissingCredentialsError as err:
        out.error(cli_message(err, args), err, None, EXIT_AUTH)
        return EXIT_AUTH
    except ValueError as err:
        message = cli_words(str(err)).replace("auth must be", "--auth must be")
        out.error(message, err, None, EXIT_USAGE)
        return EXIT_USAGE
    try:
        with kontext:
            return int(args.handler(args, kontext, out))
    except Interrupted as stop:
        try:
            return report_interrupted(stop, out)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    except KeyboardInterrupt as err:
        out.error("interrupted", err, None, EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except KontextError as err:
        code = exit_code_for(err)
        out.error(cli_message(err, args), err, getattr(err, "request_id", None), code)
        return code
    except OSError as err:
        out.error(str(err), err, None, EXIT_ERROR)
        return EXIT_ERROR
