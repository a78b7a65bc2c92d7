"""``netvisor`` command line: a thin dispatcher to one module per subcommand.

Each subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``
so that the commands stay independent of each other.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Final, NoReturn

# subcommand -> (module, one-line help)
SUBCOMMANDS: Final = {
    "run": ("netvisor.cmd_run", "run a program whose network is netvisor's stack"),
    "host": ("netvisor.cmd_host", "run the stack as a standalone host on a TAP or interface"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error and exit status 2 the CLI promises."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"netvisor: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netvisor", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.main(args))


if __name__ == "__main__":
    sys.exit(main())
