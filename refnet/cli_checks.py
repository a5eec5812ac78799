"""Checks the ``refnet`` subcommands run on their options before any work.

The type functions go to argparse's ``type=``: a bad value is refused at parse time with
one line naming the option, what it got and what was expected (``refnet.cli`` prints it and
exits with status 2). Output paths are tried for real -- a directory created and removed
beside the target -- since ``os.access`` says yes to root on a read-only or virtual file
system (``/proc``), and a path refused after an hour of training loses the hour.
"""

import argparse
import math
import os
import tempfile


class UsageError(Exception):
    """A bad command line found after parsing (options that conflict, an output directory
    holding a run): ``refnet.cli.main`` prints it as one line and exits with status 2."""


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected {'an integer' if kind is int else 'a number'}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a finite number")
    return value


def int_at_least(minimum):
    """``type=``: an integer >= ``minimum``."""
    def check(text):
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"got {value}, expected an integer >= {minimum}")
        return value
    return check


def number_in(low=0.0, high=math.inf, low_open=False, high_open=False):
    """``type=``: a finite number in the interval from ``low`` to ``high`` (closed unless said)."""
    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    where = f"in {left}{low:g}, {'inf' if high == math.inf else format(high, 'g')}{right}"

    def check(text):
        value = _number(text, float)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"got {value:g}, expected a number {where}")
        return value
    return check


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)
nonnegative = number_in(0.0)


def existing_dir(text):
    """``type=``: a directory that exists (an input: data files)."""
    path = os.path.expanduser(text)
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(
            f"got {text!r}, which {'is not a directory' if os.path.exists(path) else 'does not exist'}; "
            f"expected the directory holding the data files")
    return path


def writable_dir(text):
    """``type=``: a directory that can be written, existing or creatable (nothing is left
    behind by the check)."""
    path = os.path.expanduser(text)
    if not path:
        raise argparse.ArgumentTypeError("got '', expected a directory")
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"got {text!r}, which is a file; expected a directory")
    _probe(text, path if os.path.isdir(path) else _existing_parent(text, path))
    return path


def writable_file(text):
    """``type=``: a file path whose directory exists and can be written, not a directory."""
    path = os.path.expanduser(text)
    if not path or os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"got {text!r}, which is a directory; expected a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"got {text!r}, but its directory {parent} does not exist")
    _probe(text, parent)
    return path


def _existing_parent(text, path):
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"got {text!r}, but {parent} is a file, not a directory")
    return parent


def _probe(text, directory):
    """Create and remove a directory in ``directory``, or say why that is impossible."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".refnet-write-check-", dir=directory))
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"got {text!r}, but {directory} cannot be written ({err.strerror or err}); "
            f"expected a writable directory") from None
