"""Pure functions: ``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads``."""
