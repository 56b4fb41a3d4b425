"""The ``ehr-agent`` command line.  Each area registers its own subcommands (one module each), so that
this file stays a dispatcher: store commands live in ``tools/store/cli.py``, retrieval in
``tools/retrieval/cli.py``, ``ask`` in ``agent/ask_cli.py``, evaluation in ``agent/eval/cli.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> has a ``register(subparsers)`` function
COMMAND_MODULES = (
    "ehr_agent.tools.store.cli",
    "ehr_agent.tools.retrieval.cli",
    "ehr_agent.agent.ask_cli",
    "ehr_agent.agent.cohort_cli",
    "ehr_agent.agent.eval.cli",
    "ehr_agent.agent.mcp_server",
    "ehr_agent.tools.settings",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every area's subcommands."""
    parser = argparse.ArgumentParser(
        prog="ehr-agent",
        description="Cited question answering over FHIR R4 records: load, search, retrieve, ask, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ehr-agent`` console script; returns the process exit code."""
    from ehr_agent.agent.models.base import ModelError
    from ehr_agent.tools.settings import SettingsError, load_settings
    from ehr_agent.tools.store.base import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load_settings()  # a misspelt EHR_AGENT_* variable stops every command before it does any work
        rc = args.func(args)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except ModelError as e:
        print(f"error: model: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
