"""2-D convolution (cross-correlation, as in PyTorch) by im2col and one GEMM per product.

Shapes (NCHW):
    x (N, C, H, W), w (F, C, KH, KW), b (F,) or None, stride (sh, sw), padding (ph, pw)
    y (N, F, Ho, Wo) with Ho = (H + 2 ph - KH) // sh + 1, Wo = (W + 2 pw - KW) // sw + 1

    y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]

im2col lays every receptive field out as a column:

    cols[(c, p, q), (n, i, j)] = xpad[n, c, i*sh + p, j*sw + q]      (C*KH*KW, N*Ho*Wo)
    w_mat = w.reshape(F, C*KH*KW)
    y_mat = w_mat @ cols + b[:, None]                                 (F, N*Ho*Wo)

so the convolution is a matrix product and its gradient is that of a matrix product.
With dy_mat[f, (n, i, j)] = dy[n, f, i, j]:

    dL/dw_mat = dy_mat @ cols^T            -> dw = (dy_mat @ cols^T).reshape(F, C, KH, KW)
    dL/db     = sum over (n, i, j) of dy_mat
    dL/dcols  = w_mat^T @ dy_mat
    dL/dx     = col2im(dL/dcols): each xpad entry appears in several columns (one per kernel
                offset covering it), so its gradient is the SUM of those entries; then crop
                the padding.

Layout choices (measured on a 2-core CPU):
  * Columns are channel-first, (C, KH, KW, N, Ho, Wo): a forward pass 1.2-2x faster than with
    the row-major (N*Ho*Wo, C*KH*KW) alternative, and y_mat (F, N, Ho, Wo) becomes NCHW by ONE
    transpose copy.
  * The padded input is built channel-first, (C, N, Hp, Wp), in the same copy that pads, so
    every im2col slice copy and col2im slice add reads and writes in matching order.
  * im2col is KH*KW strided slice copies into one preallocated array, col2im KH*KW strided
    slice adds; the same code runs on numpy and cupy (np.add.at is ~50x slower).
  * The cache holds x, not cols: cols are KH*KW times larger than x. Rebuilding them in the
    backward costs one more im2col (a third to a half of one GEMM at 3x3) and keeps a network's
    activation memory close to PyTorch's, which also saves only x and w.
"""

from refnet import backend
from refnet.ops._checks import check_float, check_ndim, check_shape, pair

_OP = "conv2d_forward"


def _output_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _im2col(x, kh, kw, stride, padding, out_hw):
    """(N, C, H, W) -> cols (C*KH*KW, N*Ho*Wo), channel-first (see the module docstring)."""
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    # Pad and move channels first in a single copy: every slice below is then one strided
    # read in the same (C, N, ...) order as the write.
    xpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xpad[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    if kh == kw == 1 and sh == sw == 1:
        return xpad.reshape(c, n * ho * wo)      # a 1x1 stride-1 conv's columns ARE xpad
    cols = xp.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            # All output positions' (p, q) tap at once: rows p, p+sh, ..., columns q, q+sw, ...
            cols[:, p, q] = xpad[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]
    return cols.reshape(c * kh * kw, n * ho * wo)


def _col2im(dcols, x_shape, kh, kw, stride, padding, out_hw):
    """Adjoint of _im2col: sum every column entry back onto the input pixel it was read from."""
    xp = backend.array_module(dcols)
    n, c, h, w = x_shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    dcols = dcols.reshape(c, kh, kw, n, ho, wo)
    dxpad = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dcols.dtype)
    for p in range(kh):
        for q in range(kw):
            # Within one offset the strided target slots are distinct, so += is exact;
            # overlaps between offsets are summed across iterations.
            dxpad[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw] += dcols[:, p, q]
    # Crop the padding and go back to NCHW in one copy.
    return xp.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """y = conv2d(x, w) + b, PyTorch's cross-correlation. Returns (y, cache).

    x (N, C, H, W); w (F, C, KH, KW); b (F,) or None; stride >= 1 and padding >= 0, each an
    int or an (h, w) pair. y (N, F, Ho, Wo), same dtype as x (float32 stays float32).
    """
    check_ndim("x", x, 4, _OP)
    check_ndim("w", w, 4, _OP)
    check_float("x", x, _OP)
    if w.dtype != x.dtype:
        raise TypeError(f"{_OP}(w): got dtype {w.dtype}, expected {x.dtype} (the dtype of x)")
    stride = pair("stride", stride, _OP, minimum=1)
    padding = pair("padding", padding, _OP, minimum=0)
    n, c, h, wd = x.shape
    f, cw, kh, kw = w.shape
    if cw != c:
        raise ValueError(f"{_OP}(w): w has shape {tuple(w.shape)}, i.e. {cw} input channels, "
                         f"but x has {c} channels (shape {tuple(x.shape)})")
    if b is not None:
        check_shape("b", b, (f,), _OP)
        if b.dtype != x.dtype:
            raise TypeError(f"{_OP}(b): got dtype {b.dtype}, expected {x.dtype} (the dtype of x)")
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(f"{_OP}(w): kernel {kh}x{kw} is larger than the padded input "
                         f"{hp}x{wp} (x {h}x{wd}, padding {padding})")
    ho, wo = _output_size(h, kh, stride[0], padding[0]), _output_size(wd, kw, stride[1], padding[1])

    cols = _im2col(x, kh, kw, stride, padding, (ho, wo))
    y = w.reshape(f, -1) @ cols                                  # (F, N*Ho*Wo): the one GEMM
    if b is not None:
        y += b.reshape(f, 1)                                     # in place: no temporary
    xp = backend.array_module(x, w)
    y = xp.ascontiguousarray(y.reshape(f, n, ho, wo).transpose(1, 0, 2, 3))  # the one copy to NCHW
    cache = (x, w, b is not None, stride, padding)
    return y, cache


def conv2d_backward(dy, cache):
    """Gradients of conv2d_forward: returns (dx, dw, db); db is None when b was None.

    dy (N, F, Ho, Wo). dw = dy_mat @ cols^T, db = dy summed over (n, i, j),
    dx = col2im(w_mat^T @ dy_mat) (derivation in the module docstring).
    """
    x, w, has_bias, stride, padding = cache
    f, _, kh, kw = w.shape
    n = x.shape[0]
    ho, wo = _output_size(x.shape[2], kh, stride[0], padding[0]), _output_size(
        x.shape[3], kw, stride[1], padding[1])
    check_shape("dy", dy, (n, f, ho, wo), "conv2d_backward")

    dy_mat = dy.transpose(1, 0, 2, 3).reshape(f, n * ho * wo)   # one copy; dy itself untouched
    cols = _im2col(x, kh, kw, stride, padding, (ho, wo))         # rebuilt: see "cache" above
    dw = (dy_mat @ cols.T).reshape(w.shape)                      # BLAS reads cols.T in place
    del cols                                                     # free before the next big array
    db = dy_mat.sum(axis=1) if has_bias else None
    dcols = w.reshape(f, -1).T @ dy_mat
    dx = _col2im(dcols, x.shape, kh, kw, stride, padding, (ho, wo))
    return dx, dw, db
