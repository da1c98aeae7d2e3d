# The common call's checks, compiled (included by _recurrence.pyx).
#
# _checks.check_forward / check_backward validate and normalise every argument; most calls
# need no normalising: float input, every array a C-contiguous ndarray (not a subclass) of
# one float dtype with the right shape.  lean_forward / lean_backward recognise exactly those
# calls through NumPy's C API and return what the full checks would return; for anything
# else they return None and the caller runs the full checks, which normalise or raise the
# error that names the argument.  In the interpreter the forward's tests took 4.4 us of a
# 12 us T = 1 call (B = 1, D = H = 8), here 1.8; the backward's 2.0 us, here 0.7.

from fastgates._checks import (Backward as _Backward,
                               FLOAT_DTYPES as _FLOAT_DTYPES, Forward as _Forward,
                               Packing as _Packing, _SHAPES, _check_sizes,
                               GATES as _KERNEL_GATES, _rest_shapes,
                               check_lengths as _check_lengths)

cdef object _F32 = _FLOAT_DTYPES[0], _F64 = _FLOAT_DTYPES[1]


cdef inline bint _plain(object a, object dtype, int ndim) noexcept:
    """a is an ndarray (not a subclass) of exactly `dtype`, C-contiguous, `ndim`-D."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (<object>cnp.PyArray_DESCR(arr) is dtype and cnp.PyArray_NDIM(arr) == ndim
            and cnp.PyArray_IS_C_CONTIGUOUS(arr))


cdef inline bint _plain_shape(object a, object dtype, tuple shape):
    """_plain with the shape `shape` (a tuple of ints)."""
    cdef int nd = len(shape), i
    if not _plain(a, dtype, nd):
        return False
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>a)
    for i in range(nd):
        if dims[i] != <cnp.npy_intp>shape[i]:
            return False
    return True


cdef inline bint _none_or_plain(object a, object dtype, cnp.npy_intp T, cnp.npy_intp B,
                                cnp.npy_intp H):
    """An optional array argument (a state, a gradient): None, or a plain array of dtype,
    (T, B, H), or (B, H) when T < 0."""
    if a is None:
        return True
    if not _plain(a, dtype, 2 if T < 0 else 3):
        return False
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>a)
    if T < 0:
        return dims[0] == B and dims[1] == H
    return dims[0] == T and dims[1] == B and dims[2] == H


cdef set _SIZES_OK = set()     # the sizes _check_sizes passed (its answer depends on them only)


cdef inline void _check_sizes_once(T, B, D, H, G, itemsize, training) except *:
    """_check_sizes, asked once per set of sizes: the interpreted call costs a small call
    ~0.4 us, the set lookup ~0.1."""
    key = (T, B, D, H, G, itemsize, training)
    if key in _SIZES_OK:
        return
    _check_sizes(T, B, D, H, G, itemsize, training, False)
    if len(_SIZES_OK) >= 256:
        _SIZES_OK.clear()
    _SIZES_OK.add(key)


def lean_forward(cell, x, state, params, training, lengths):
    """_checks.check_forward's result for a call that needs no normalising, else None
    (see the top of this file).  Same arguments as check_forward."""
    return _lean_forward(cell, x, state, params, training, lengths)


cdef object _lean_forward(cell, x, state, params, training, lengths):
    if training is not True and training is not False or type(state) is not dict \
            or type(params) is not dict:
        return None
    w_ih, w_hh = params.get("weight_ih"), params.get("weight_hh")
    if not (_plain(w_hh, _F32, 2) or _plain(w_hh, _F64, 2)):
        return None
    dtype = <object>cnp.PyArray_DESCR(<cnp.ndarray>w_hh)
    if not _plain(w_ih, dtype, 2):
        return None
    cdef cnp.npy_intp *wd = cnp.PyArray_DIMS(<cnp.ndarray>w_hh)
    cdef cnp.npy_intp *id_ = cnp.PyArray_DIMS(<cnp.ndarray>w_ih)
    cdef int G = cell.G
    cdef cnp.npy_intp GH = wd[0], H = wd[1], D = id_[1]
    if H == 0 or GH != G * H or id_[0] != GH or D == 0:
        return None
    shapes = _SHAPES.get((cell.name, D, H))       # _rest_shapes' memo, read here first
    if shapes is None:
        shapes = _rest_shapes(cell, D, H)
    if len(params) > len(shapes) + 2:
        stems = {st for st, _ in shapes}
        for k, v in params.items():
            if v is not None and k != "weight_ih" and k != "weight_hh" and k not in stems:
                return None      # optional parameters (the lstm's w_hr, w_peep): full checks
    rest = {}
    for stem, shape in shapes:
        a = params.get(stem)
        if not _plain_shape(a, dtype, shape):
            return None
        rest[stem] = a
    if not _plain(x, dtype, 3) or cnp.PyArray_DIMS(<cnp.ndarray>x)[2] != D:
        return None
    cdef cnp.npy_intp T = cnp.PyArray_DIMS(<cnp.ndarray>x)[0], B = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    h0 = state.get("h")
    c0 = state.get("c") if "c" in cell.states else None
    if not (_none_or_plain(h0, dtype, -1, B, H) and _none_or_plain(c0, dtype, -1, B, H)):
        return None
    _check_sizes_once(T, B, D, H, G, dtype.itemsize, training)
    pk = None
    if lengths is not None:
        lengths = _check_lengths(lengths, T, B)
        pk = _Packing(lengths, T)
    b_ih, b_hh = rest.pop("bias_ih"), rest.pop("bias_hh")
    return tuple.__new__(_Forward, (cell.kernel, cell.variant, dtype, x, False, h0, c0, w_ih,
                                    w_hh, b_ih, b_hh, T, B, D, H, G, lengths, pk, cell,
                                    rest or None))


def lean_backward(kernel, dy, dh_n, dc_n, cache):
    """_checks.check_backward's result for a call that needs no normalising, else None:
    a cache of this kernel's compiled or reference forward without extra parameters (the
    projected LSTM's h is P wide: the full checks), gradients plain arrays of its dtype."""
    return _lean_backward(kernel, dy, dh_n, dc_n, cache)


cdef object _lean_backward(kernel, dy, dh_n, dc_n, cache):
    if type(cache) is not Cache or cache.cell != kernel or cache.params is not None:
        return None
    T, B, D, H = cache.shape
    dtype = cache.dtype
    if not (_none_or_plain(dy, dtype, T, B, H) and _none_or_plain(dh_n, dtype, -1, B, H)
            and _none_or_plain(dc_n, dtype, -1, B, H)):
        return None
    return tuple.__new__(_Backward, (dy, dh_n, dc_n, T, B, D, H, _KERNEL_GATES[kernel]))
