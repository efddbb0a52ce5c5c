"""Forward + backward time of ops.fused_conv against four other ways to do its complex
contraction (issue 19's proposed speed-up of the deep model's step; issue 17 item 4).

``ops.fused_conv`` contracts the spectra with ``einsum("ncf,gcf->ngf")`` (a complex bmm over the
frequencies, whose CPU backward makes one small copy per frequency). The alternatives:

- ``freq_major``: FFTs along time-major dim 0, one complex ``bmm`` (F, N, C) @ (F, C, G);
- ``time_last_bmm``: the same FFTs as fused_conv, the spectra permuted for one complex ``bmm``;
- ``real_block``: one real ``bmm`` with the 2C x 2G block matrix [[Kr, Ki], [-Ki, Kr]];
- ``real_four``: four real ``bmm`` (Re and Im parts) and ``torch.complex``.

Shapes are the deep psMNIST candidates B (T 784, batch 100, C 4, G 64) and C (C 8, G 96).
Every form is first checked equal to fused_conv. One JSON line per (shape, form): the median of
``--reps`` timed calls after 2 warm-up calls, rounds interleaved.

    OMP_NUM_THREADS=1 python benchmarks/fused_conv_forms.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from torchlmu import ops
from torchlmu.experiments.harness import provenance


def _fft_len(T: int) -> int:
    from scipy.fft import next_fast_len

    return next_fast_len(2 * T - 1)


def freq_major(u, K):
    T = u.shape[0]
    n = _fft_len(T)
    Uf = torch.fft.rfft(u, n=n, dim=0)  # (F, N, C)
    Kf = torch.fft.rfft(K[:T], n=n, dim=0)  # (F, G, C)
    return torch.fft.irfft(torch.bmm(Uf, Kf.transpose(1, 2)), n=n, dim=0)[:T]


def time_last_bmm(u, K):
    T = u.shape[0]
    n = _fft_len(T)
    Uf = torch.fft.rfft(u.permute(1, 2, 0), n=n).permute(2, 0, 1)  # (F, N, C)
    Kf = torch.fft.rfft(K[:T].permute(1, 2, 0), n=n).permute(2, 1, 0)  # (F, C, G)
    Yf = torch.bmm(Uf, Kf).permute(1, 2, 0)  # (N, G, F)
    return torch.fft.irfft(Yf, n=n)[..., :T].permute(2, 0, 1)


def real_block(u, K):
    T, N, C = u.shape
    G = K.shape[1]
    n = _fft_len(T)
    Uf = torch.view_as_real(torch.fft.rfft(u.permute(1, 2, 0), n=n))  # (N, C, F, 2)
    F = Uf.shape[2]
    U2 = Uf.permute(2, 0, 3, 1).reshape(F, N, 2 * C)
    Kf = torch.view_as_real(torch.fft.rfft(K[:T].permute(1, 2, 0), n=n))  # (G, C, F, 2)
    Kr, Ki = Kf[..., 0].permute(2, 1, 0), Kf[..., 1].permute(2, 1, 0)  # (F, C, G)
    K2 = torch.cat([torch.cat([Kr, Ki], 2), torch.cat([-Ki, Kr], 2)], 1)  # (F, 2C, 2G)
    Y2 = torch.bmm(U2, K2).reshape(F, N, 2, G).permute(1, 3, 0, 2).contiguous()
    return torch.fft.irfft(torch.view_as_complex(Y2), n=n)[..., :T].permute(2, 0, 1)


def real_four(u, K):
    T = u.shape[0]
    n = _fft_len(T)
    Uf = torch.fft.rfft(u, n=n, dim=0)  # (F, N, C)
    Kf = torch.fft.rfft(K[:T].transpose(1, 2), n=n, dim=0)  # (F, C, G)
    Ur, Ui, Kr, Ki = Uf.real, Uf.imag, Kf.real, Kf.imag
    Yf = torch.complex(torch.bmm(Ur, Kr) - torch.bmm(Ui, Ki), torch.bmm(Ur, Ki) + torch.bmm(Ui, Kr))
    return torch.fft.irfft(Yf, n=n, dim=0)[:T]


FORMS = {
    "fused_conv": ops.fused_conv,
    "freq_major": freq_major,
    "time_last_bmm": time_last_bmm,
    "real_block": real_block,
    "real_four": real_four,
}


def one_call(f, u, K) -> float:
    u1, K1 = u.detach().requires_grad_(), K.detach().requires_grad_()
    t0 = time.perf_counter()
    y = f(u1, K1)
    y.backward(torch.full_like(y, 0.1))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    prov = provenance(args.threads, "cpu")
    for name, (T, N, C, G) in {"B": (784, 100, 4, 64), "C": (784, 100, 8, 96)}.items():
        g = torch.Generator().manual_seed(0)
        u, K = torch.randn(T, N, C, generator=g), 0.1 * torch.randn(T, G, C, generator=g)
        ref = ops.fused_conv(u, K)
        for f in FORMS.values():
            torch.testing.assert_close(f(u, K), ref, rtol=1e-4, atol=1e-4)
        times = {k: [] for k in FORMS}
        for _ in range(2):
            for f in FORMS.values():
                one_call(f, u, K)
        for _ in range(args.reps):  # interleaved rounds: load changes hit every form alike
            for k, f in FORMS.items():
                times[k].append(one_call(f, u, K))
        base = statistics.median(times["fused_conv"])
        for k, ts in times.items():
            med = statistics.median(ts)
            row = {
                "shape": name,
                "T": T,
                "batch": N,
                "channels": C,
                "outputs": G,
                "form": k,
                "median_ms": round(1e3 * med, 2),
                "min_ms": round(1e3 * min(ts), 2),
                "ratio_to_fused_conv": round(med / base, 3),
                "threads": args.threads,
                "provenance": prov,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
