"""The ``refnet`` command. Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> exit code``; this file only dispatches.

Every mistake on the command line ends the same way, before any work: one line
``refnet COMMAND: what was wrong`` on stderr and exit status 2 (argparse's own errors
included, and a ``refnet.cli_checks.UsageError`` raised by a subcommand). Ctrl-C or SIGTERM
prints one line and exits with 130, unless the subcommand handles it itself (``refnet
train`` finishes the step and saves a checkpoint).
"""

import argparse
import importlib
import sys

import refnet
from refnet import signals
from refnet.cli_checks import UsageError

# name -> (module implementing it, one-line help)
SUBCOMMANDS = {
    "gradcheck": ("refnet.gradcheck.command", "check every built-in op and module against numerical gradients"),
    "train": ("refnet.train_cli", "train a model and record norms, effective lr and angular updates"),
    "reproduce": ("refnet.experiments.reproduce", "reproduce the paper's claims as figures and a report"),
    "calibrate": ("refnet.experiments.calibrate", "measure the claims' seed-to-seed noise that sets their tolerances"),
    "bench": ("refnet.bench", "time forward+backward of the ops and a training step"),
    "docs": ("refnet.docs_cli", "store the lessons' executed notebooks for the site; --screenshots"),
}
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and no abbreviated options (``--over`` is not
    ``--overwrite``: the exact names are what a resume command and the checks rely on)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.startswith("argument "):
            message = message[len("argument "):]
        self.exit(2, f"{self.prog}: {message}\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends every option's text with its default, unless the text already says it
    (options whose default depends on another choice say it in words) or the option is a
    switch (off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings \
                or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def build_parser():
    parser = Parser(
        prog="refnet",
        description="NumPy-from-scratch reference for 'L2 Regularization versus Batch and Weight "
                    "Normalization' (van Laarhoven, 2017).")
    parser.add_argument("--version", action="version", version=f"refnet {refnet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            if err.name != module_name:  # a real import error inside the module: show it
                raise
            continue  # not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as stop:  # a bad option (2, already printed) or --help/--version (0)
        return stop.code
    if unknown:  # said here, so that the line names the subcommand
        print(f"{' '.join(['refnet', args.command or ''])}: unrecognized arguments: {' '.join(unknown)}",
              file=sys.stderr)
        return 2
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    args._argv = argv  # what a subcommand prints back, e.g. the command that resumes a run
    try:
        with signals.handled(signals.raise_interrupt):
            return int(args._run(args) or 0)
    except UsageError as err:
        print(f"refnet {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"refnet {args.command}: {err or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
