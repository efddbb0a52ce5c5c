"""Quick start: the memory holds a window of its input; an LMU layer; streaming the same weights."""

import torch

from torchlmu import LMU, LegendreMemory, legendre

torch.manual_seed(0)

# 1. The memory alone: order 12, window θ = 50 steps. Its state at step t holds u over
#    [t − θ, t] in the shifted-Legendre basis, so a row of Legendre polynomials reads any delay.
order, theta = 12, 50.0
mem = LegendreMemory(1, order, theta, dtype=torch.float64)
with torch.no_grad():
    mem.input_encoders.fill_(1.0)  # u = x
t = torch.arange(300, dtype=torch.float64)
x = torch.sin(2 * torch.pi * t / 120).reshape(-1, 1, 1)  # (T, B, I): a slow sine
with torch.no_grad():
    states, last = mem(x)  # states (T, B, d), last (B, d)
r = torch.tensor([0.0, 0.5, 1.0])  # now, θ/2 ago, θ ago
decoded = states[-1, 0] @ legendre.readout(order, r).T
truth = x[-1 - (r * theta).long(), 0, 0]
print("decoded", decoded.numpy().round(3), "true", truth.numpy().round(3))
assert (decoded - truth).abs().max() < 0.05

# 2. A layer: 1 input, 32 tanh units, order 64, window 100 steps. The memory's input depends on
#    x alone, so the memory runs in parallel and only the tanh recurrence steps.
lmu = LMU(1, 32, order=64, theta=100.0, input_to_hidden=True, batch_first=True)
x = torch.randn(4, 100, 1)  # (B, T, I)
y, state = lmu(x)  # y (B, T, H); state: LMUState(memory (B, d), hidden (B, H))
print(y.shape, state.memory.shape, state.hidden.shape)

# 3. Streaming the same weights one step at a time (from any state) gives the same outputs.
stepper = lmu.stepper()  # a snapshot of the weights, one matmul per step
st = None
with torch.no_grad():
    for k in range(100):
        y_k, st = stepper(x[:, k], st)
print("max |stream − parallel|:", float((y_k - y[:, -1]).abs().max()))
assert torch.allclose(y_k, y[:, -1], atol=1e-5)
