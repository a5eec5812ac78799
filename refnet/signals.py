"""Ctrl-C (SIGINT) and SIGTERM as requests to stop, handled by explicit handlers.

Python turns SIGINT into ``KeyboardInterrupt`` only if the process did not inherit it as
ignored (a job started with ``&`` from a script does), and turns SIGTERM into nothing: the
process just dies. Both lose work. Inside ``handled(on_signal)`` each of those signals
calls ``on_signal(signum)`` instead, whatever the process inherited, and the previous
handlers come back afterwards, so a library caller's own handlers are left as found.

    with handled(trainer.request_stop):   # the step in flight finishes, then fit() stops
        trainer.fit()
    with handled(raise_interrupt):        # SIGTERM behaves like Ctrl-C
        ...
"""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum):
    """``"SIGINT"`` for ``signal.SIGINT``, and so on."""
    return signal.Signals(signum).name


@contextlib.contextmanager
def handled(on_signal, signals=STOP_SIGNALS):
    """Call ``on_signal(signum)`` for each of ``signals`` received inside the block.

    Handlers can only be set from the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: on_signal(signum)) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():  # None: set from C, not restorable; the default then
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which (a KeyboardInterrupt, as Ctrl-C is)."""

    def __init__(self, signum, message=None):
        self.signum = signum
        super().__init__(message or f"interrupted by {signal_name(signum)}")


def raise_interrupt(signum):
    """A handler for ``handled``: stop where the program is, as Ctrl-C does by default."""
    raise Interrupted(signum)
