"""2-D max and average pooling over KH x KW windows, no padding (PyTorch's floor mode).

Shapes: x (N, C, H, W), kernel (KH, KW), stride (sh, sw) defaulting to the kernel,
y (N, C, Ho, Wo) with Ho = (H - KH) // sh + 1, Wo = (W - KW) // sw + 1.

Both are computed over the KH*KW strided views of x, one per kernel offset (p, q):

    view_pq = x[:, :, p : p + sh*(Ho-1) + 1 : sh, q : q + sw*(Wo-1) + 1 : sw]     (N, C, Ho, Wo)

view_pq[n, c, i, j] = x[n, c, i*sh + p, j*sw + q] is the (p, q) tap of window (i, j). A loop
over KH*KW whole-array operations replaces a loop over N*C*Ho*Wo windows (the max over
the views measured ~25x faster than reshape/argmax tricks).

Max:  y = max_pq view_pq. The max is piecewise the identity of one input, so
      dL/dx[n, c, i*sh + p, j*sw + q] += dy[n, c, i, j] for the ONE (p, q) that attains the
      max; on ties that is the first offset in row-major (p, q) order, PyTorch's choice.
      Overlapping windows (stride < kernel) add their contributions. A window holding a NaN
      has max NaN (NaN propagates) and, as in PyTorch, its gradient goes to its LAST NaN.
Avg:  y = (1 / (KH*KW)) sum_pq view_pq, so every tap gets dy / (KH*KW):
      dL/dx[n, c, i*sh + p, j*sw + q] += dy[n, c, i, j] / (KH*KW).

Forward mode and second order (tangent tx of x, tdy of dy). Both pools are piecewise
linear in x, so the second derivative is zero (max: almost everywhere, away from ties):

    max: ty[n, c, i, j] = tx at the tap the backward routes to (first maximum, or last NaN),
         tdx = maxpool2d_backward(tdy) with the same routing; tx does not enter.
    avg: ty = avgpool2d_forward(tx), tdx = avgpool2d_backward(tdy): the op is linear.

At a tie the tangent picks the same tap as the gradient, so <ty, dy> = <tx, dx> holds exactly.

Speed: max pooling's forward and backward run over blocks of the batch (``_BLOCK`` values
of x each) on ``_chunks.threads()`` threads (``_chunks.run_blocks``): every sample is pooled on its own, and
a block's strided views stay in cache across the KH*KW passes. On (128, 32, 32, 32) 2x2,
fastest calls on a shared 2-core machine, forward+backward went from 13.8-16 ms to 10.7 ms
on one thread and 6.3-7.3 ms on two (PyTorch CPU, two threads: 12.5 ms).
"""

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_ndim, check_shape, pair
from refnet.ops._chunks import row_blocks, run_blocks

# values of x per block, 512 kB of float32: 2^17 was the fastest of 2^14 .. 2^22 on the
# bench shape (two threads, idle machine: 6.3 ms, against 7.7-8.3 at 2^16 and 2^18 .. 2^19)
_BLOCK = 2 ** 17


def _setup(x, kernel_size, stride, op):
    check_ndim("x", x, 4, op)
    check_float("x", x, op)
    kernel = pair("kernel_size", kernel_size, op, minimum=1)
    stride = kernel if stride is None else pair("stride", stride, op, minimum=1)
    h, w = x.shape[2:]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(f"{op}(kernel_size): kernel {kernel[0]}x{kernel[1]} is larger than "
                         f"the input {h}x{w} (x shape {tuple(x.shape)})")
    out_hw = ((h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    return kernel, stride, out_hw


def _views(a, kernel, stride, out_hw):
    """Yield the KH*KW strided views of a (N, C, H, W) array, in row-major (p, q) order."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    for p in range(kh):
        for q in range(kw):
            yield a[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]


def maxpool2d_forward(x, kernel_size, stride=None):
    """y = max over each window. Returns (y, cache)."""
    kernel, stride, out_hw = _setup(x, kernel_size, stride, "maxpool2d_forward")
    xp = backend.array_module(x)
    y = xp.empty(x.shape[:2] + out_hw, dtype=x.dtype)
    blocks = _batch_blocks(x, xp)

    def block(k):
        r = blocks[k]
        views = _views(x[r], kernel, stride, out_hw)
        yb = y[r]
        xp.copyto(yb, next(views))
        for v in views:
            xp.maximum(yb, v, out=yb)    # in place: one (N, C, Ho, Wo) array for the whole loop
    run_blocks(block, len(blocks))
    return y, (x, y, kernel, stride)


def _batch_blocks(x, xp):
    """Batch slices of about ``_BLOCK`` values of x, for ``run_blocks``."""
    return row_blocks(x.shape[0], x[0].size, xp, _BLOCK)


def maxpool2d_backward(dy, cache):
    """dx: dy routed to the first maximum of each window, or to its last NaN when it holds
    one (PyTorch's choices), summed where windows overlap."""
    x, y, kernel, stride = cache
    check_shape("dy", dy, y.shape, "maxpool2d_backward")
    check_dtype("dy", dy, "the forward's x", x, "maxpool2d_backward")
    xp = backend.array_module(x, dy)
    dx = xp.zeros_like(x)
    blocks = _batch_blocks(x, xp)
    run_blocks(lambda k: _route_to_first_maximum(x[blocks[k]], y[blocks[k]], dy[blocks[k]],
                                                 dx[blocks[k]], kernel, stride, xp), len(blocks))
    if bool(xp.isnan(y).any()):      # a NaN max equals nothing, so its window got no gradient yet
        _route_nan_windows(x, y, dy, dx, kernel, stride)
    return dx


def _route_to_first_maximum(x, y, dy, dx, kernel, stride, xp):
    """dx += dy at each window's first maximum (a block of the batch: the caller's slices)."""
    # Which windows still wait for their gradient: the argmax is not stored in the forward;
    # scanning the offsets in order and routing at the first view equal to the max gives
    # exactly PyTorch's first-maximum choice on ties (frequent: a window of ReLU zeros).
    pending = None                   # None: every window (the first offset needs no mask)
    out_hw = y.shape[2:]
    # Disjoint windows (stride >= kernel, the usual 2x2/2): every dx slot belongs to one
    # window, so each offset's share is WRITTEN into its view, with no temporary and no add
    # (14 instead of 20 passes over y-sized arrays for 2x2; 1.3-1.5x faster backward).
    disjoint = stride[0] >= kernel[0] and stride[1] >= kernel[1]
    for v, dv in zip(_views(x, kernel, stride, out_hw), _views(dx, kernel, stride, out_hw)):
        hit = (v == y)
        if pending is None:
            pending = ~hit
        else:
            hit &= pending
            pending ^= hit           # hit is a subset of pending: this clears exactly those
        if disjoint:
            xp.multiply(dy, hit, out=dv)
        else:
            dv += dy * hit           # distinct targets within one view, so += is exact


def _route_nan_windows(x, y, dy, dx, kernel, stride):
    """Give each window whose max is NaN its gradient at its LAST NaN tap in row-major (p, q)
    order, as PyTorch does: its kernels keep ``if (val > maxval || isnan(val))``, so every
    NaN met in the scan takes the index over. Scanning the offsets backwards, the first NaN
    met is that last one."""
    xp = backend.array_module(x, dy)
    pending = xp.isnan(y)
    views = list(zip(_views(x, kernel, stride, y.shape[2:]), _views(dx, kernel, stride, y.shape[2:])))
    for v, dv in reversed(views):
        hit = xp.isnan(v) & pending
        pending &= ~hit
        dv += xp.where(hit, dy, 0)


def avgpool2d_forward(x, kernel_size, stride=None):
    """y = mean over each window. Returns (y, cache)."""
    kernel, stride, out_hw = _setup(x, kernel_size, stride, "avgpool2d_forward")
    views = _views(x, kernel, stride, out_hw)
    y = next(views).copy()
    for v in views:
        y += v
    y *= 1.0 / (kernel[0] * kernel[1])   # a Python float keeps x's dtype
    return y, (x.shape, kernel, stride, backend.array_module(x).empty(0, dtype=x.dtype))


def avgpool2d_backward(dy, cache):
    """dx: dy / (KH*KW) added to every tap of its window. (The cache keeps an empty array
    of x's dtype and array module, not x: a zero tangent is made like it.)"""
    x_shape, kernel, stride, like = cache
    dtype = like.dtype
    n, c, h, w = x_shape
    out_hw = ((h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    check_shape("dy", dy, (n, c) + out_hw, "avgpool2d_backward")
    check_dtype("dy", dy, "the forward's x", dtype, "avgpool2d_backward")
    xp = backend.array_module(dy)
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    g = dy * (1.0 / (kernel[0] * kernel[1]))
    for dv in _views(dx, kernel, stride, out_hw):
        dv += g
    return dx


def maxpool2d_forward_jvp(cache, tx):
    """ty: tx gathered from the tap each window's gradient is routed to (first maximum;
    last NaN in a NaN window), so that <ty, dy> = <tx, maxpool2d_backward(dy)>."""
    x, y, kernel, stride = cache
    xp = backend.array_module(x)
    if tx is None:
        return xp.zeros_like(y)
    out_hw = y.shape[2:]
    ty, pending = None, None
    for v, tv in zip(_views(x, kernel, stride, out_hw), _views(tx, kernel, stride, out_hw)):
        hit = (v == y)               # first maximum in row-major order, as maxpool2d_backward
        if pending is None:
            pending, ty = ~hit, tv * hit
        else:
            hit &= pending
            pending ^= hit
            ty += tv * hit
    nan = xp.isnan(y)
    if bool(nan.any()):
        views = list(zip(_views(x, kernel, stride, out_hw), _views(tx, kernel, stride, out_hw)))
        for v, tv in reversed(views):
            hit = xp.isnan(v) & nan
            nan &= ~hit
            xp.copyto(ty, tv, where=hit)
    return ty


def maxpool2d_backward_jvp(dy, tdy, cache, tx=None):
    """Tangent of dx: tdy routed as dy is; tx does not enter (zero second derivative a.e.)."""
    x = cache[0]
    xp = backend.array_module(x, dy)
    return maxpool2d_backward(xp.zeros_like(dy) if tdy is None else tdy, cache)


def avgpool2d_forward_jvp(cache, tx):
    """ty = avgpool2d(tx): the op is linear."""
    x_shape, kernel, stride, like = cache
    if tx is None:
        n, c, h, w = x_shape
        return backend.array_module(like).zeros(
            (n, c, (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1), dtype=like.dtype)
    return avgpool2d_forward(tx, kernel, stride)[0]


def avgpool2d_backward_jvp(dy, tdy, cache, tx=None):
    """Tangent of dx: avgpool2d_backward(tdy); tx does not enter (the op is linear)."""
    return avgpool2d_backward(backend.array_module(dy).zeros_like(dy) if tdy is None else tdy, cache)
