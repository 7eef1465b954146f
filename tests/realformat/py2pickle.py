"""Pickles as Python 2's cPickle wrote them (protocol 2), the format of the CIFAR-10 python batches.

Python 2 strings are byte strings (``SHORT_BINSTRING``/``BINSTRING``), so a Python 3 reader sees
``bytes`` keys unless it passes an encoding; numpy arrays go through ``numpy.core.multiarray._reconstruct``
(the module path of numpy 1.x) with the raw buffer as a byte string. Only what CIFAR uses: dicts with
byte-string keys, byte strings, ints, lists of those, and uint8 C-order 2-D arrays.
"""

from __future__ import annotations

import struct

import numpy as np


def _str(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _array(a: np.ndarray) -> bytes:
    if a.dtype != np.uint8 or not a.flags.c_contiguous:
        raise ValueError("only C-order uint8 arrays")
    shape = b"".join(_int(int(s)) for s in a.shape)
    shape_tuple = shape + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[a.ndim]
    dtype = (b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _str(b"|") + b"NNN" + b"J\xff\xff\xff\xff" + b"J\xff\xff\xff\xff" + _int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85" + _str(b"b")
            + b"\x87R" + b"(" + _int(1) + shape_tuple + dtype + b"\x89" + _str(a.tobytes()) + b"tb")


def _value(v) -> bytes:
    if isinstance(v, bytes):
        return _str(v)
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("no bools in CIFAR")
    if isinstance(v, (int, np.integer)):
        return _int(int(v))
    if isinstance(v, list):
        return b"](" + b"".join(_value(x) for x in v) + b"e" if v else b"]"
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, dict):
        return b"}(" + b"".join(_value(k) + _value(x) for k, x in v.items()) + b"u"
    raise TypeError(f"cannot write {type(v).__name__}")


def dumps(obj: dict) -> bytes:
    """``obj`` as a protocol-2 pickle in Python 2's encoding (no memo: every object written once)."""
    return b"\x80\x02" + _value(obj) + b"."
