"""Spiking: the Legendre memory in spiking LIF neurons on Nengo, against the ideal memory.

Needs the "spiking" extra (Nengo). The memory is mapped onto recurrently connected ensembles
through a lowpass synapse (torchlmu.spiking explains the exact discrete mapping); its state is
compared with LegendreMemory's, which is what the network approximates.
"""

import nengo
import numpy as np
import torch

from torchlmu import LegendreMemory, spiking
from torchlmu.data import white_noise_np

order, theta, dt, steps = 4, 0.5, 1e-3, 2000  # window 0.5 s, 2 s of simulated time
u = white_noise_np(1, steps, dt=dt, cutoff=2.0, rms=0.5, seed=1)[0]  # band-limited input (T,)
# regular-spiking LIF neurons at 100–200 Hz and a 50 ms synapse: spike noise well below the
# signal (the default Poisson neurons at 20–40 Hz are the paper's noisier setting)
net = spiking.memory_network(
    order, theta, n_neurons=1200, dt=dt, tau=0.05, input=u, seed=0,
    neuron_type=nengo.LIF(), max_rates=nengo.dists.Uniform(100, 200),
)  # fmt: skip
with nengo.Simulator(net, dt=dt, progress_bar=False) as sim:
    sim.run_steps(steps)
m_spiking = sim.data[net.probe_memory]  # (T, d): m at step k ≈ the ideal after input k − 1

ideal = LegendreMemory(1, order, theta / dt, dtype=torch.float64)  # θ in steps of dt
with torch.no_grad():
    ideal.input_encoders.fill_(1.0)
    m_ideal = ideal(torch.from_numpy(u).reshape(-1, 1, 1))[0][:, 0].numpy()  # (T, d)
late = slice(500, steps - 1)  # after the first window has filled
err = np.linalg.norm(m_spiking[1:][late] - m_ideal[:-1][late]) / np.linalg.norm(m_ideal[:-1][late])
print(f"relative error of the spiking memory (order {order}, 1200 neurons): {err:.3f}")
assert err < 0.2
