"""Readers for the array files that built-in datasets ship: IDX and pickled ndarrays.

The pickled-ndarray reader never unpickles: it interprets the handful of
opcodes that ``pickle.dumps(numpy_array)`` emits and refuses anything else,
so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hubtune.data.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    data = _read_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes), "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_NDARRAY = ("numpy", "ndarray")
_DTYPE = ("numpy", "dtype")


class _Mark:
    pass


def read_pickled_ndarray(path: Path) -> np.ndarray:
    """Read a (gzip-compressed) pickle of one numpy array without unpickling it.

    The opcodes are interpreted on a small stack of plain values: only numpy's
    ndarray/dtype reconstruction may be named, and nothing is ever called.
    """
    data = _read_maybe_gz(path)

    def fail(why: str) -> DataError:
        return DataError(f"{path} is not a plain pickled numpy array ({why})")

    stack: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        ops = list(pickletools.genops(data))
    except Exception as exc:  # malformed opcode stream
        raise fail(f"unreadable pickle: {exc}") from None
    for op, arg, _pos in ops:
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            break
        if not (_value_op(name, arg, stack, memo) or _object_op(name, arg, stack, fail)):
            raise fail(f"unsupported pickle opcode {name}")
    if len(stack) != 1 or not isinstance(stack[0], dict) or "raw" not in stack[0]:
        raise fail("no array found")
    return _array_of(stack[0], fail)


_PUSH_ARG = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "SHORT_BINBYTES", "BINBYTES",
             "BINBYTES8", "BININT", "BININT1", "BININT2", "LONG1"}


def _value_op(name: str, arg: Any, stack: list[Any], memo: dict[int, Any]) -> bool:
    """Apply an opcode of plain values (literals, memo, marks, tuples); False if not one."""
    if name in _PUSH_ARG:
        stack.append(arg)
    elif name == "NONE":
        stack.append(None)
    elif name in ("NEWTRUE", "NEWFALSE"):
        stack.append(name == "NEWTRUE")
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name in ("BINGET", "LONG_BINGET"):
        stack.append(memo[arg])
    elif name == "MARK":
        stack.append(_Mark)
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        items = tuple(stack[-n:])
        del stack[-n:]
        stack.append(items)
    elif name == "TUPLE":
        cut = len(stack) - 1 - stack[::-1].index(_Mark)
        items = tuple(stack[cut + 1 :])
        del stack[cut:]
        stack.append(items)
    elif name == "EMPTY_TUPLE":
        stack.append(())
    else:
        return False
    return True


def _object_op(name: str, arg: Any, stack: list[Any], fail: Callable[[str], DataError]) -> bool:
    """Apply an opcode naming or building an object (only ndarray/dtype); False if not one."""
    if name in ("STACK_GLOBAL", "GLOBAL"):
        ref = tuple(arg.split(" ", 1)) if name == "GLOBAL" else (stack.pop(-2), stack.pop())
        if ref not in _RECONSTRUCT and ref not in (_NDARRAY, _DTYPE):
            raise fail(f"refers to {'.'.join(ref)}")
        stack.append(("global", ref))
    elif name == "REDUCE":
        args, func = stack.pop(), stack.pop()
        if func[1] in _RECONSTRUCT:
            stack.append({"kind": "ndarray"})
        elif func[1] == _DTYPE:
            stack.append({"kind": "dtype", "str": args[0], "order": "="})
        else:
            raise fail("unexpected call")
    elif name == "BUILD":
        state, obj = stack.pop(), stack[-1]
        if obj.get("kind") == "dtype":
            obj["order"] = state[1]
        elif obj.get("kind") == "ndarray":
            _version, shape, dtype, fortran, raw = state
            obj.update(shape=shape, dtype=dtype, fortran=fortran, raw=raw)
        else:
            raise fail("unexpected object state")
    else:
        return False
    return True


def _array_of(arr: dict[str, Any], fail: Callable[[str], DataError]) -> np.ndarray:
    """The array described by the interpreted pickle (native byte order)."""
    if not isinstance(arr["raw"], bytes | bytearray):
        raise fail("object arrays are not supported")
    order = arr["dtype"]["order"]
    dtype = np.dtype(arr["dtype"]["str"])
    if order in "<>":
        dtype = dtype.newbyteorder(order)
    shape = tuple(int(s) for s in arr["shape"])
    if len(arr["raw"]) != int(np.prod(shape)) * dtype.itemsize:
        raise fail("payload size does not match its shape")
    out = np.frombuffer(arr["raw"], dtype=dtype).reshape(shape, order="F" if arr["fortran"] else "C")
    return out.astype(dtype.newbyteorder("="))
