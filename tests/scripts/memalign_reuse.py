"""Whether a freed 64-byte-aligned slab is reused by the next request of the same size, as
XLA's CPU runtime allocates each step's temporaries (tests/runtime_test.py).

  python tests/scripts/memalign_reuse.py                        # jnas.runtime.tune_malloc()
  GLIBC_TUNABLES=<jnas.runtime.TUNABLES> python tests/scripts/memalign_reuse.py

A fresh thread (an empty per-thread cache, as an XLA worker's can be) allocates a 32 MB slab
with ``posix_memalign(64, ...)``, frees it and asks again, a few times. Prints ``RESULT`` and
a JSON object: the malloc status, how many distinct addresses the slabs had, and how much
the heap grew (glibc's ``mallinfo2().arena``) over the rounds.
"""

import ctypes
import json
import threading

import jnas.runtime

SLAB = 32 << 20
ROUNDS = 5


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = _Mallinfo2
libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
status = jnas.runtime.tune_malloc()
addresses = []


def rounds():
    for _ in range(ROUNDS):
        p = ctypes.c_void_p()
        assert libc.posix_memalign(ctypes.byref(p), 64, SLAB) == 0
        addresses.append(p.value)
        libc.free(p)


before = libc.mallinfo2().arena
thread = threading.Thread(target=rounds)
thread.start()
thread.join()
grown = libc.mallinfo2().arena - before
print(
    "RESULT" + json.dumps(dict(status=status, distinct=len(set(addresses)), grown_mb=grown / 2**20))
)
