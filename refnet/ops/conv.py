"""2-D convolution (cross-correlation, as in PyTorch) by im2col and matrix products.

Shapes (NCHW):
    x (N, C, H, W), w (F, C, KH, KW), b (F,) or None, stride (sh, sw), padding (ph, pw)
    y (N, F, Ho, Wo) with Ho = (H + 2 ph - KH) // sh + 1, Wo = (W + 2 pw - KW) // sw + 1

    y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]

im2col lays every receptive field out as a row, one row per output position (the column
order (p, q, c) is that of the channel-last layout below):

    cols[(n, i, j), (p, q, c)] = xpad[n, c, i*sh + p, j*sw + q]        (N*Ho*Wo, KH*KW*C)
    w_rows[f, (p, q, c)]       = w[f, c, p, q]                          (F, KH*KW*C)
    y_rows = cols @ w_rows^T + b                                        (N*Ho*Wo, F)

so the convolution is a matrix product and its gradient is that of a matrix product.
With dy_rows[(n, i, j), f] = dy[n, f, i, j]:

    dL/dw_rows = dy_rows^T @ cols           -> dw (F, C, KH, KW) after undoing the (p, q, c) order
    dL/db      = sum over (n, i, j) of dy_rows
    dL/dcols   = dy_rows @ w_rows
    dL/dx      = col2im(dL/dcols): each xpad entry appears in several rows (one per kernel
                 offset covering it), so its gradient is the SUM of those entries; then crop.

For stride 1 the last two lines collapse into one convolution. Substituting
(i, j) = (u + ph - p, v + pw - q) in the sum that col2im computes,

    dx[n, c, u, v] = sum_{f, p, q} dy[n, f, u + ph - p, v + pw - q] * w[f, c, p, q]

(dy read as 0 outside its range): the correlation of dy, zero-padded by (KH-1-ph, KW-1-pw),
with the kernel flipped in space and transposed, w'[c, f, p, q] = w[f, c, KH-1-p, KW-1-q].
The backward computes it one kernel row at a time, all rows in ONE product. With dypad that
padded dy, channel-last (N, H+KH-1, W+KW-1, F), so that dx[n, c, u, v] =
sum_{f, p, q} dypad[n, u + p, v + q, f] * w[f, c, KH-1-p, KW-1-q]:

    rows[(n, r, v), (q, f)] = dypad[n, r, v + q, f]             (N*(H+KH-1)*W, KW*F)
    w2[(q, f), (p, c)]      = w[f, c, KH-1-p, KW-1-q]             (KW*F, KH*C)
    g = rows @ w2,  then    dx[n, c, u, v] = sum_p g[(n, u + p, v), (p, c)]

(the sum: KH slice-adds of whole (N, H, W, C) blocks, where col2im of dL/dcols takes KH*KW
slice-adds with runs of only C entries).

Performance (each choice measured on the 2-core CPU this was written on, against the
channel-first layout with slice-copy im2col that came before; thread CPU time):
  * Two layouts of the same columns, picked per call by which gives NumPy the longer
    contiguous runs to copy -- its copies and adds cost per run, not per byte, here.
    channel-last (KW*C >= Wo: every 3x3 layer but a network's first): the padded input is kept
    (N, Hp, Wp, C), so a kernel row's KW*C entries are ONE run and im2col is a single
    copy of a strided window view (2-6x faster than KH*KW slice copies with runs of Wo).
    channel-first (KW*C < Wo: RGB or grey input; and 1x1 stride-1 kernels unless C >= Ho*Wo,
    whose channel-first columns are whole planes): cols_t (C*KH*KW, N*Ho*Wo), rows (c, p, q),
    built and undone by KH*KW strided slice copies/adds with runs of Wo, from a
    (C, N, Hp, Wp) copy of x; the products are the ones above, transposed, and dx is always
    col2im'ed (its flipped convolution would need F/C times larger columns: 10x at 3->32).
  * cols @ w_rows^T is the fastest orientation of the forward product (10-20%), and its
    (N, Ho*Wo, F) result becomes NCHW in one copy.
  * Stride-1 dx by kernel rows (above), not by the flipped convolution's full im2col: that
    copies about KH times more (the (N*H*W, KH*KW*F) columns of dy) into a product only C
    wide, which ran at 58 GFLOP/s at C = 32 against 79 at KH*C = 96. 13% less time for dx
    at 32->64 channels, 16x16 (the extra KH-1 rows per image cost FLOPs: 25% at 8x8, where
    the two ways take the same time).
  * Few, large BLAS calls, each oriented so that its result has more rows than columns:
    OpenBLAS with 2 threads, on a machine where another process wants the cores, was 10-25x
    slower per call on the opposite orientation of dw's (small x small, long sum) product
    and on many small calls (a tap-by-tap col2im in blocks: 0.8 s instead of 0.05 s).
  * The columns are written into a reused per-thread buffer (``_workspace``): a fresh array
    over glibc's 32 MB mmap threshold is new pages every call, and faulting them in cost
    as much as the copy itself (7.0 -> 3.2 ms per im2col at 32->64 channels, 16x16).
    So are the products that are copied out to NCHW: fresh ones cost new pages too, often
    enough (glibc's threshold moves with what was freed before) to add 20% to dx.
  * dx only where it is wanted: a network's first layer takes ``conv2d_backward_params``
    (its input is data; PyTorch skips dx too for an input without requires_grad). At 3->32
    channels, 32x32, dx is about half the backward; without it a CIFAR-sized 3-block CNN's
    training step took 7% less time (one thread).
  * The cache holds x, not cols: cols are KH*KW times larger than x. Rebuilding them in the
    backward costs one more im2col (a fifth of one product at 3x3) and keeps a network's
    activation memory below PyTorch's, which also saves x and w.
"""

import math
import threading

from refnet import backend
from refnet.ops._checks import check_dtype, check_float, check_ndim, check_shape, pair

_OP = "conv2d_forward"
_WORKSPACE_MAX = 2 ** 27     # bytes: larger columns (big eval batches) get a fresh array
_local = threading.local()   # per thread, so concurrent convolutions never share a buffer


def _output_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _channel_last(c, kh, kw, stride, out_hw):
    """The layout whose im2col copy runs are longer (module docstring): KW*C channel-last,
    Wo channel-first -- or whole Ho*Wo planes there for a 1x1 stride-1 kernel."""
    ho, wo = out_hw
    first_run = ho * wo if (kh, kw, stride) == (1, 1, (1, 1)) else wo
    return kw * c >= first_run


def _workspace(xp, shape, dtype, slot="cols"):
    """An uninitialized array of ``shape`` in this thread's reused buffer ``slot``: "cols"
    for im2col columns, "product" for a product's result that is copied out (to NCHW).

    Valid until the next call for that slot: both live only inside one conv2d_forward or
    conv2d_backward, which never nest, and nothing returned or cached points into them.
    """
    nbytes = dtype.itemsize * math.prod(shape)     # dtype: an array's .dtype
    if nbytes > _WORKSPACE_MAX:
        return xp.empty(shape, dtype=dtype)
    buffers = _local.__dict__.setdefault("buffers", {})
    buf = buffers.get((xp.__name__, slot))
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[xp.__name__, slot] = xp.empty(nbytes, dtype="uint8")
    return buf[:nbytes].view(dtype).reshape(shape)


def workspace_nbytes():
    """Bytes this thread holds in reused buffers, columns and products (``refnet bench`` reports it)."""
    return sum(b.nbytes for b in _local.__dict__.get("buffers", {}).values())


def _taps(a, kh, kw, stride, out_hw):
    """The strided window view (N, Ho, Wo, KH, KW, C) of a channel-last padded (N, Hp, Wp, C)
    array: element [n, i, j, p, q, c] is a[n, i*sh + p, j*sw + q, c]. No copy."""
    xp = backend.array_module(a)
    (sh, sw), (ho, wo) = stride, out_hw
    s_n, s_h, s_w, s_c = a.strides            # bytes; every index stays inside a (kernel fits)
    return xp.lib.stride_tricks.as_strided(a, (a.shape[0], ho, wo, kh, kw, a.shape[3]),
                                           (s_n, sh * s_h, sw * s_w, s_h, s_w, s_c))


def _im2col(x, kh, kw, stride, padding, out_hw):
    """Channel-last: (N, C, H, W) -> cols (N*Ho*Wo, KH*KW*C), columns ordered (p, q, c)."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    (ph, pw), (ho, wo) = padding, out_hw
    xpad = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)   # pad + channel-last: one copy
    xpad[:, ph:ph + h, pw:pw + w] = x.transpose(0, 2, 3, 1)
    taps = _taps(xpad, kh, kw, stride, out_hw)
    if taps.flags.c_contiguous:      # 1x1, stride 1, no padding: the rows ARE xpad
        cols = taps
    else:
        cols = _workspace(xp, taps.shape, x.dtype)
        cols[...] = taps             # the one copy
    return cols.reshape(n * ho * wo, kh * kw * c)


def _im2col_t(x, kh, kw, stride, padding, out_hw):
    """Channel-first: (N, C, H, W) -> cols_t (C*KH*KW, N*Ho*Wo), rows ordered (c, p, q)."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    xpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)  # pad + channel-first: one copy
    xpad[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return xpad.reshape(c, n * ho * wo)      # a 1x1 stride-1 conv's columns ARE xpad
    cols = _workspace(xp, (c, kh, kw, n, ho, wo), x.dtype)
    for p in range(kh):
        for q in range(kw):
            # All output positions' (p, q) tap at once: rows p, p+sh, ..., columns q, q+sw, ...
            cols[:, p, q] = xpad[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]
    return cols.reshape(c * kh * kw, n * ho * wo)


def _col2im_t(dcols_t, x_shape, kh, kw, stride, padding, out_hw):
    """Channel-first adjoint of _im2col_t: sum every column entry back onto its input pixel."""
    xp = backend.array_module(dcols_t)
    n, c, h, w = x_shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    dcols_t = dcols_t.reshape(c, kh, kw, n, ho, wo)
    dxpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dcols_t.dtype)
    for p in range(kh):
        for q in range(kw):
            dxpad[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw] += dcols_t[:, p, q]
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


def _inner(u, v):
    """u^T @ v for u (P, m), v (P, k): a sum over the long axis P (dw's product).

    Taken in whichever orientation has the taller result, then transposed back (a view):
    with 2 threads on a busy machine OpenBLAS was up to 25x slower on the orientation whose
    result has fewer rows than columns (it is the same product; one thread does not care).
    """
    return u.T @ v if u.shape[1] >= v.shape[1] else (v.T @ u).T


def _w_rows(w):
    """w (F, C, KH, KW) -> (F, KH*KW*C), the (p, q, c) column order of channel-last cols."""
    xp = backend.array_module(w)
    return xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """y = conv2d(x, w) + b, PyTorch's cross-correlation. Returns (y, cache).

    x (N, C, H, W); w (F, C, KH, KW); b (F,) or None; stride >= 1 and padding >= 0, each an
    int or an (h, w) pair. y (N, F, Ho, Wo), same dtype as x (float32 stays float32).
    """
    check_ndim("x", x, 4, _OP)
    check_ndim("w", w, 4, _OP)
    check_float("x", x, _OP)
    check_dtype("w", w, "x", x, _OP)
    stride = pair("stride", stride, _OP, minimum=1)
    padding = pair("padding", padding, _OP, minimum=0)
    n, c, h, wd = x.shape
    f, cw, kh, kw = w.shape
    if cw != c:
        raise ValueError(f"{_OP}(w): w has shape {tuple(w.shape)}, i.e. {cw} input channels, "
                         f"but x has {c} channels (shape {tuple(x.shape)})")
    if b is not None:
        check_shape("b", b, (f,), _OP)
        check_dtype("b", b, "x", x, _OP)
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(f"{_OP}(w): kernel {kh}x{kw} is larger than the padded input "
                         f"{hp}x{wp} (x {h}x{wd}, padding {padding})")
    ho, wo = _output_size(h, kh, stride[0], padding[0]), _output_size(wd, kw, stride[1], padding[1])
    xp = backend.array_module(x, w)

    # The product goes into the reused "product" buffer; .copy() (never a view, even where
    # the transpose is one) takes it out, as NCHW.
    if _channel_last(c, kh, kw, stride, (ho, wo)):
        y = xp.matmul(_im2col(x, kh, kw, stride, padding, (ho, wo)), _w_rows(w).T,
                      out=_workspace(xp, (n * ho * wo, f), x.dtype, "product"))   # (N*Ho*Wo, F)
        if b is not None:
            y += b                                                         # in place
        y = y.reshape(n, ho * wo, f).transpose(0, 2, 1).copy()
    else:
        y = xp.matmul(w.reshape(f, -1), _im2col_t(x, kh, kw, stride, padding, (ho, wo)),
                      out=_workspace(xp, (f, n * ho * wo), x.dtype, "product"))  # (F, N*Ho*Wo)
        if b is not None:
            y += b.reshape(f, 1)
        y = y.reshape(f, n, ho * wo).transpose(1, 0, 2).copy()
    cache = (x, w, b is not None, stride, padding)
    return y.reshape(n, f, ho, wo), cache


def conv2d_backward(dy, cache):
    """Gradients of conv2d_forward: returns (dx, dw, db); db is None when b was None.

    dy (N, F, Ho, Wo). dw = dy_rows^T @ cols, db = dy summed over (n, i, j),
    dx = col2im(dy_rows @ w_rows) (derivation in the module docstring), which for stride 1
    is computed as the equal convolution of dy with the flipped kernel.
    """
    x, w, _, stride, padding = cache
    dw, db, dy_t = _parameter_gradients(dy, cache, "conv2d_backward")
    return _input_gradient(dy, dy_t, x.shape, w, stride, padding), dw, db


def conv2d_backward_params(dy, cache):
    """(dw, db) alone (``conv2d_backward`` without dx, its product and col2im): all that a
    network's first layer needs, whose input is data and needs no gradient."""
    return _parameter_gradients(dy, cache, "conv2d_backward_params")[:2]


def _parameter_gradients(dy, cache, op):
    """(dw, db, dy_t), dy_t being dy as (F, N*Ho*Wo), which dx's channel-first path reuses."""
    x, w, has_bias, stride, padding = cache
    f, c, kh, kw = w.shape
    n = x.shape[0]
    ho, wo = _output_size(x.shape[2], kh, stride[0], padding[0]), _output_size(
        x.shape[3], kw, stride[1], padding[1])
    check_shape("dy", dy, (n, f, ho, wo), op)
    check_dtype("dy", dy, "the forward's x", x, op)
    xp = backend.array_module(dy, w)

    # dy_rows^T as (F, N*Ho*Wo): one copy with runs of Ho*Wo; dy itself is untouched.
    dy_t = xp.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(f, n * ho * wo)
    db = dy_t.sum(axis=1) if has_bias else None
    if _channel_last(c, kh, kw, stride, (ho, wo)):
        cols = _im2col(x, kh, kw, stride, padding, (ho, wo))     # rebuilt: see "cache" above
        dw = _inner(dy_t.T, cols).reshape(f, kh, kw, c).transpose(0, 3, 1, 2)
    else:
        cols = _im2col_t(x, kh, kw, stride, padding, (ho, wo)).T
        dw = _inner(dy_t.T, cols).reshape(w.shape)
    return xp.ascontiguousarray(dw), db, dy_t


def _input_gradient(dy, dy_t, x_shape, w, stride, padding):
    """dx = col2im(dy_rows @ w_rows); dy_t is dy as (F, N*Ho*Wo), or None to make it here."""
    xp = backend.array_module(dy, w)
    f, c, kh, kw = w.shape
    ho, wo = dy.shape[2:]
    (ph, pw), (sh, sw) = padding, stride
    if _channel_last(c, kh, kw, stride, (ho, wo)) and sh == sw == 1 and ph < kh and pw < kw:
        return _flipped_by_rows(dy, w, x_shape, padding)
    if dy_t is None:
        dy_t = xp.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(f, -1)
    return _col2im_t(w.reshape(f, -1).T @ dy_t, x_shape, kh, kw, stride, padding, (ho, wo))


def _flipped_by_rows(dy, w, x_shape, padding):
    """Stride-1 dx: the convolution of dy with the flipped kernel, one product for all kernel
    rows, then a sum over them (module docstring: rows, w2, g)."""
    xp = backend.array_module(dy, w)
    n, f = dy.shape[:2]
    c, kh, kw = w.shape[1:]
    h, wd = x_shape[2:]
    # rows: im2col of dy, padded by (KH-1-ph, KW-1-pw), with a 1 x KW kernel; columns (q, f)
    rows = _im2col(dy, 1, kw, (1, 1), (kh - 1 - padding[0], kw - 1 - padding[1]), (h + kh - 1, wd))
    w2 = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(3, 0, 2, 1)).reshape(kw * f, kh * c)
    g = xp.matmul(rows, w2, out=_workspace(xp, (rows.shape[0], kh * c), dy.dtype, "product"))
    g = g.reshape(n, h + kh - 1, wd, kh, c)
    dx = g[:, :h, :, 0].copy()
    for p in range(1, kh):
        dx += g[:, p:p + h, :, p]
    return xp.ascontiguousarray(dx.transpose(0, 3, 1, 2))


def conv2d_backward_input(dy, cache):
    """dx alone (``conv2d_backward``'s first result, without dw's im2col and product): what a
    Hessian-vector product needs to pass back through a layer."""
    x, w, _, stride, padding = cache
    return _input_gradient(dy, None, x.shape, w, stride, padding)


def conv2d_forward_jvp(cache, tx, tw, tb=None):
    """Tangent of y: conv(tx, w) + conv(x, tw) + tb (None tangents are zero)."""
    x, w, _, stride, padding = cache
    ty = None
    if tx is not None:
        ty = conv2d_forward(tx, w, None, stride, padding)[0]
    if tw is not None:
        part = conv2d_forward(x, tw, None, stride, padding)[0]
        ty = part if ty is None else ty + part
    if ty is None:  # no tangent: zeros of y's shape, without convolving zeros
        n, _, h, wd = x.shape
        f, _, kh, kw = w.shape
        ty = backend.array_module(x, w).zeros(
            (n, f, (h + 2 * padding[0] - kh) // stride[0] + 1, (wd + 2 * padding[1] - kw) // stride[1] + 1),
            dtype=x.dtype)
    if tb is not None:
        ty += tb.reshape(1, -1, 1, 1)
    return ty


def conv2d_backward_jvp(dy, tdy, cache, tx, tw, tb=None):
    """Tangents of (dx, dw, db): (dx(tdy, w) + dx(dy, tw), dw(tdy, x) + dw(dy, tx), sum tdy)."""
    x, w, has_bias, stride, padding = cache
    xp = backend.array_module(dy, x, w)
    tdy = xp.zeros_like(dy) if tdy is None else tdy
    tdx, tdw, tdb = conv2d_backward(tdy, cache)
    if tx is not None or tw is not None:
        tangent_cache = (xp.zeros_like(x) if tx is None else tx, xp.zeros_like(w) if tw is None else tw,
                         False, stride, padding)
        dx_tw, dw_tx, _ = conv2d_backward(dy, tangent_cache)
        tdx = tdx + dx_tw
        tdw = tdw + dw_tx
    return tdx, tdw, tdb
