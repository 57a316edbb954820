"""How `continuum` finds its verbs: each verb is a small object, registered the way vLLM's CLI registers its
subcommands (a name, a parser of its own, a function to run), and announced in the `continuum.verbs` entry point
group of the project's metadata, so the product's command line imports no harness module.

A verb whose module cannot be imported because an optional extra is missing (``continuum[eval]``) still shows
in ``--help`` and says which extra to install, instead of vanishing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol

GROUP = "continuum.verbs"
# The order `continuum --help` lists them in; verbs of other packages follow, by name.
ORDER = ("serve", "cluster", "models", "policies", "trace", "replay", "bench", "sim", "profile")


class Verb(Protocol):
    """One subcommand. ``passthrough``: flags its parser does not know are handed to ``run`` (vLLM's flags)."""

    name: str
    passthrough: bool

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser: ...

    def run(self, args: argparse.Namespace, extra: list[str]) -> int: ...


class VerbError(ValueError):
    """Bad input to a verb: printed as ``continuum VERB: message``, exit status 2."""


class MissingExtra:
    """Stands in for a verb whose optional dependencies are not installed."""

    passthrough = True

    def __init__(self, name: str, extras: list[str], error: ImportError) -> None:
        self.name, self.extras, self.error = name, extras, error

    def install_hint(self) -> str:
        return f"pip install 'continuum[{','.join(self.extras)}]'"

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        return subparsers.add_parser(self.name, add_help=False, help=f"(not installed: {self.install_hint()})")

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        print(f"continuum {self.name}: needs the {' and '.join(self.extras)} extra, which is not installed "
              f"({self.error}); install it with: {self.install_hint()}", file=sys.stderr)
        return 2


def load(point: EntryPoint) -> Verb:
    try:
        return point.load()()
    except ImportError as exc:
        if not point.extras:  # a verb of the product itself must import: that is a bug, not a missing extra
            raise
        return MissingExtra(point.name, list(point.extras), exc)


def discover() -> list[Verb]:
    points = sorted(entry_points(group=GROUP), key=lambda p: (ORDER.index(p.name) if p.name in ORDER
                                                              else len(ORDER), p.name))
    return [load(p) for p in points]


def build_parser(verbs: list[Verb], description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="continuum", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in verbs:
        verb.add_to(sub).set_defaults(verb=verb)
    return parser


# The project's loggers (and a module run with `python -m`, named ``__main__``): their INFO lines are a command's
# progress and status. Other libraries stay at WARNING (httpx logs every request at INFO).
LOGGERS = ("continuum", "continuum_eval", "continuum_workloads", "continuum_agents", "kvttl", "__main__")


def setup_logging(level: int = logging.INFO) -> None:
    """Send the project's log lines (``level`` and up; WARNING and up for other libraries) to stderr as bare
    messages. Called once by each command-line entry point; does nothing if the root logger already has handlers
    (a host program's or pytest's logging set-up is left alone)."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, then run the chosen verb: bad input exits 2 with the verb's name, Ctrl-C exits 130."""
    setup_logging()
    args, extra = parser.parse_known_args(argv)
    verb: Verb = args.verb
    if extra and not verb.passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return verb.run(args, extra)
    except VerbError as exc:
        print(f"continuum {verb.name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"continuum {verb.name}: interrupted", file=sys.stderr)
        return 130
