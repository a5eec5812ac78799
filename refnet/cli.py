"""The ``refnet`` command. Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> exit code``; this file only dispatches."""

import argparse
import importlib
import sys

import refnet

# name -> (module implementing it, one-line help)
SUBCOMMANDS = {
    "gradcheck": ("refnet.gradcheck_suite", "check every built-in op and module against numerical gradients"),
    "train": ("refnet.train_cli", "train a model and record norms, effective lr and angular updates"),
    "reproduce": ("refnet.experiments.reproduce", "reproduce the paper's claims as figures and a report"),
    "bench": ("refnet.bench", "time forward+backward of the ops and a training step"),
    "docs": ("refnet.docs_cli", "store the lessons' executed notebooks for the site; --screenshots"),
}


def build_parser():
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
