"""cffi build script (API mode, out-of-line) for ``netvisor.tcpip.wire._checksum_c``.

Run by setup.py (``cffi_modules``) at ``pip install``; the package works
without the result (checksum.py falls back to pure Python), and setup.py
turns a failed compile into a warning. Not imported at run time.

``nv_partial_sum`` returns the ones'-complement sum of ``buf`` as big-endian
16-bit words folded to 16 bits (0 only for all-zero or empty input), the
same value class as checksum._partial_sum_py. It sums native-endian 64-bit
loads with end-around carry and swaps bytes at the end: RFC 1071 2(B), the
sum is independent of byte order up to a final swap.
"""

from __future__ import annotations

from cffi import FFI

CDEF = "uint64_t nv_partial_sum(const uint8_t *buf, size_t len);"

SOURCE = r"""
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline uint64_t nv_add64(uint64_t sum, uint64_t v)
{
    sum += v;
    return sum + (sum < v);          /* end-around carry */
}

uint64_t nv_partial_sum(const uint8_t *buf, size_t len)
{
    uint64_t s0 = 0, s1 = 0, v0, v1, v2, v3;
    /* Four loads per round, two accumulators: keeps the carry chains short. */
    while (len >= 32) {
        memcpy(&v0, buf, 8); memcpy(&v1, buf + 8, 8);
        memcpy(&v2, buf + 16, 8); memcpy(&v3, buf + 24, 8);
        s0 = nv_add64(s0, v0); s1 = nv_add64(s1, v1);
        s0 = nv_add64(s0, v2); s1 = nv_add64(s1, v3);
        buf += 32; len -= 32;
    }
    while (len >= 8) {
        memcpy(&v0, buf, 8);
        s0 = nv_add64(s0, v0);
        buf += 8; len -= 8;
    }
    if (len) {                        /* tail: zero-padded, same word grid */
        uint8_t tail[8] = {0};
        memcpy(tail, buf, len);
        memcpy(&v0, tail, 8);
        s0 = nv_add64(s0, v0);
    }
    s0 = nv_add64(s0, s1);
    /* Fold 64 -> 16 bits, still in native byte order. */
    s0 = (s0 & 0xffffffffu) + (s0 >> 32);
    s0 = (s0 & 0xffffu) + (s0 >> 16);
    s0 = (s0 & 0xffffu) + (s0 >> 16);
    s0 = (s0 & 0xffffu) + (s0 >> 16);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    s0 = ((s0 & 0xffu) << 8) | (s0 >> 8);
#endif
    return s0;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("netvisor.tcpip.wire._checksum_c", SOURCE,
                      extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
