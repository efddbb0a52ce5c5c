"""One-off (session 16): the lower triangle of Ā·Ā at order 4096 in rows of 256 or 512 (as
_square_p_symmetric), by a recursive 2×2 split with diagonal blocks of 256 or 512, and the whole
product; 2 threads, seconds per squaring, three rounds alternating."""

import itertools
import time

import torch

torch.set_num_threads(2)
d = 4096
A = torch.randn(d, d, dtype=torch.float64)
out = torch.empty_like(A)


def rows(A, out, R=256):
    n = max(1, d // R)
    edges = [round(k * d / n) for k in range(n + 1)]
    for r0, r1 in itertools.pairwise(edges):
        torch.mm(A[r0:r1], A[:, :r1], out=out[r0:r1, :r1])


def rec(A, out, r0, r1, base):
    # lower part (cols <= rows block) of rows r0:r1, cols r0:r1 of A@A
    if r1 - r0 <= base:
        torch.mm(A[r0:r1], A[:, r0:r1], out=out[r0:r1, r0:r1])
        return
    m = (r0 + r1) // 2
    torch.mm(A[m:r1], A[:, r0:m], out=out[m:r1, r0:m])
    rec(A, out, r0, m, base)
    rec(A, out, m, r1, base)


def recursive(A, out, base=256):
    rec(A, out, 0, d, base)


def full(A, out):
    torch.mm(A, A, out=out)


fs = {
    "rows256": rows,
    "rows512": lambda A, o: rows(A, o, 512),
    "rec256": recursive,
    "rec512": lambda A, o: recursive(A, o, 512),
    "full": full,
}
# check rec correctness of the lower part
ref = A @ A
o2 = torch.zeros_like(A)
recursive(A, o2)
L = torch.tril(torch.ones(d, d, dtype=torch.bool))
print("rec err", (o2 - ref)[L].abs().max().item())
T = {k: [] for k in fs}
for _ in range(3):
    for k, f in fs.items():
        t0 = time.perf_counter()
        f(A, out)
        T[k].append(round(time.perf_counter() - t0, 3))
print(T)
