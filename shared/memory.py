"""Giving freed memory back to the system."""

import ctypes
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def trim() -> None:
    """Return the free pages of glibc's heap to the system (`malloc_trim(0)`); nothing where
    the C library has no such call."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
