"""The Legendre memory in spiking neurons, on Nengo: :func:`memory_network` and :func:`to_nengo`.

The memory θ·dm/dt = A m + B u is a linear dynamical system, so the Neural Engineering Framework
(NEF) maps it onto a recurrently connected population of neurons: the population represents the
state, its decoded output is fed back through a lowpass synapse h(t) = e^(−t/τ)/τ, and the
feedback and input matrices are chosen so that the synapse's own dynamics turn into the memory's.

Mapping (``mapping="discrete"``, the default). Nengo simulates the synapse exactly in discrete
time: y_k = a·y_{k−1} + (1 − a)·v_{k−1} with a = e^(−dt/τ). If the synapse's input is
v = A'x + B'u, the state obeys x_k = (a I + (1 − a) A') x_{k−1} + (1 − a) B' u_{k−1}; choosing

    A' = (Ā − a I)/(1 − a),     B' = B̄/(1 − a),

with (Ā, B̄) the zero-order-hold discretisation of the memory with step dt/θ, gives exactly
x_k = Ā x_{k−1} + B̄ u_{k−1}: the memory of :class:`~torchlmu.LegendreMemory` (ZOH) one simulator
step late, for any τ and dt (up to the neurons' decoding error). The continuous mapping
(``mapping="continuous"``) A' = τA/θ + I, B' = τB/θ is the textbook NEF mapping; it is exact
only as dt → 0 and is kept for comparison.

Representation. The state is split over ensembles of ``ensemble_dimensions`` dimensions each
(default 1: one ensemble per Legendre coefficient, m/d neurons each). One-dimensional ensembles
make the neurons' noise independent across coefficients, so each coefficient carries error
∝ √(d/m) and the state's norm error ∝ d/√m (the LMU paper's scaling), their decoders are cheap
to solve (O(E²·n) per ensemble with E evaluation points), and every corner of the state's box is
represented (a d-dimensional ensemble represents the unit ball, on which typical states have
coordinates ~1/√d). The represented state is normalised: x_i = m_i / s_i with, by default,
s_i = Σ_k abs((Ā^k B̄)_i) (``scale="l1"``): the exact largest abs(m_i) over all inputs with
abs(u) ≤ 1, so that abs(x_i) ≤ 1 = the ensembles' radius. The recurrent matrices act on x (S⁻¹A'S, S⁻¹B'),
and the decoders of the memory and of the window undo the scaling (m = S x).

Nengo is an optional dependency (``pip install torchlmu[spiking]``), imported when a function
here is called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import legendre
from .exceptions import ValidationError

__all__ = [
    "MAPPINGS",
    "SCALES",
    "import_nengo",
    "l1_scale",
    "memory_network",
    "recurrent_matrices",
    "to_nengo",
]

#: NEF mappings of the memory onto a lowpass synapse.
MAPPINGS = ("discrete", "continuous")
#: Named scalings of the represented state (or pass an array of per-coefficient scales).
SCALES = ("l1", "none")


def import_nengo() -> Any:
    """Import Nengo, or raise an ImportError that says how to install it."""
    try:
        import nengo
    except ImportError as e:  # pragma: no cover - exercised only without nengo
        raise ImportError(
            "torchlmu.spiking needs Nengo: pip install 'torchlmu[spiking]' (or pip install nengo)"
        ) from e
    return nengo


# ------------------------------------------------------------------------------------ checks
def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValidationError(name, "a positive number", repr(value))
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ValidationError(name, "a positive finite number", repr(value))
    return float(value)


def _count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(name, f"an integer >= {minimum}", repr(value))
    return int(value)


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(name, f"one of {choices}", repr(value))
    return str(value)


# -------------------------------------------------------------------------------------- math
def l1_scale(order: int, theta: float, dt: float, horizon: float = 4.0) -> np.ndarray:
    """Per-coefficient bound s_i = Σ_k abs((Ā^k B̄)_i) (ZOH, step dt/θ) over ``horizon``·θ.

    s_i is the largest abs(m_i) that any input with abs(u) ≤ 1 can produce (the l∞ gain of the
    memory's coefficient i); the impulse response has decayed to < 1e-3 of its L1 norm after
    3θ, so the default horizon of 4θ gives the bound to about 3 digits. For θ/dt > 2000 the
    sum is taken on a grid of θ/2000 (the continuous L1 norm, which the discrete one tends to).

    Returns:
        ``(order,)`` float64 array.
    """
    order = legendre.check_order(order)
    theta = _positive("theta", theta)
    dt = _positive("dt", dt)
    steps = min(theta / dt, 2000.0)
    H = legendre.impulse_response(order, steps, math.ceil(horizon * steps))
    return H.abs().sum(0).numpy()


def recurrent_matrices(
    order: int, theta: float, tau: float, dt: float, mapping: str = "discrete"
) -> tuple[np.ndarray, np.ndarray]:
    """(A' ``(d, d)``, B' ``(d,)``): the memory mapped onto a lowpass synapse τ (see the module).

    Args:
        order: d.
        theta: window θ in seconds.
        tau: the recurrent synapse's time constant in seconds.
        dt: the simulator's step in seconds.
        mapping: ``"discrete"`` (exact for the simulator's dt) or ``"continuous"``.
    """
    order = legendre.check_order(order)
    theta, tau, dt = _positive("theta", theta), _positive("tau", tau), _positive("dt", dt)
    mapping = _choice("mapping", mapping, MAPPINGS)
    A, B = legendre.state_space(order)
    if mapping == "continuous":
        return (tau / theta * A + torch.eye(order, dtype=A.dtype)).numpy(), (
            tau / theta * B
        ).numpy()
    Ad, Bd = legendre.discretize(A, B, dt / theta, "zoh")
    a = math.exp(-dt / tau)
    eye = torch.eye(order, dtype=Ad.dtype)
    return ((Ad - a * eye) / (1 - a)).numpy(), (Bd / (1 - a)).numpy()


def _scale_vector(scale: object, order: int, theta: float, dt: float) -> np.ndarray:
    if isinstance(scale, str):
        _choice("scale", scale, SCALES)
        return l1_scale(order, theta, dt) if scale == "l1" else np.ones(order)
    s = np.asarray(scale, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(order, float(s))
    if s.shape != (order,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValidationError(
            "scale", f"'l1', 'none', a positive number or {order} positive numbers", s.tolist()
        )
    return s


def _input_output(input: object, size: int, dt: float) -> Any:
    """The output of the input Node: None (a passthrough to connect), a callable, a Process
    or an array sampled once per simulator step (value k−1 at step k, held after the end)."""
    nengo = import_nengo()
    if input is None or callable(input) or isinstance(input, nengo.Process):
        return input
    arr = np.asarray(input, dtype=np.float64)
    if arr.ndim == 1 and size == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != size or len(arr) == 0:
        raise ValidationError(
            "input", f"None, a callable, a nengo.Process or an array (T, {size})", arr.shape
        )

    def present(t: float) -> np.ndarray:
        k = round(t / dt)  # Nengo's step k runs at t = k·dt, k = 1, 2, ...
        return arr[min(max(k - 1, 0), len(arr) - 1)]

    return present


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


# -------------------------------------------------------------------------------- the network
def memory_network(
    order: int,
    theta: float,
    n_neurons: int,
    *,
    dt: float = 1e-3,
    tau: float = 0.005,
    channels: int = 1,
    mapping: str = "discrete",
    neuron_type: Any = None,
    max_rates: Any = None,
    intercepts: Any = None,
    ensemble_dimensions: int = 1,
    n_eval_points: int | None = None,
    solver: Any = None,
    scale: str | float | Sequence[float] | np.ndarray = "l1",
    r: Sequence[float] | None = (0.0, 0.25, 0.5, 0.75, 1.0),
    input: Any = None,
    probe_synapse: Any = None,
    seed: int | None = None,
    label: str | None = None,
    add_to: Any = None,
) -> Any:
    """A Nengo network that holds ``channels`` Legendre memories in ``n_neurons`` neurons.

    Args:
        order: d, Legendre coefficients per channel.
        theta: window θ in **seconds** (simulated time).
        n_neurons: m, neurons in total (all channels), split as evenly as possible over the
            C·d/``ensemble_dimensions`` ensembles (each needs at least one neuron).
        dt: the simulator's step in seconds (the discrete mapping is exact for this dt only:
            pass the same dt to ``nengo.Simulator``).
        tau: time constant of the recurrent lowpass synapse (seconds).
        channels: C independent memories; the input has C dimensions.
        mapping: ``"discrete"`` (default; exact for the simulator's dt) or ``"continuous"``.
        neuron_type: any Nengo neuron type; default Poisson-spiking LIF,
            ``nengo.PoissonSpiking(nengo.LIFRate())``.
        max_rates, intercepts: Nengo distributions; default Uniform(20, 40) Hz and
            Uniform(−1, 1).
        ensemble_dimensions: dimensions per ensemble (must divide ``order``); default 1.
        n_eval_points: evaluation points per ensemble for the decoder solve; default
            clip(500·dims, 750, 2500) (Nengo's default without its 2·n term, which would make
            the solve O(n³) for large ensembles).
        solver: a Nengo solver for the decoders; default Nengo's (``LstsqL2(reg=0.1)``).
        scale: ``"l1"`` (default; abs(x_i) ≤ 1 for abs(u) ≤ 1, see :func:`l1_scale`), ``"none"``,
            or per-coefficient scales s (``(d,)``, or one number): the ensembles represent m/s.
        r: delays (fractions of θ in [0, 1]) at which the ``window`` node decodes
            u(t − r·θ) through the Legendre readout; None for no window.
        input: None (``net.input`` is a passthrough Node of size C for you to connect), a
            callable ``t -> (C,)``, a ``nengo.Process``, or an array ``(T, C)`` (or ``(T,)`` for
            C = 1) presented one row per simulator step.
        probe_synapse: synapse of the probes (default None: the represented state itself, which
            is already the synapse-filtered spike feedback).
        seed: the network's seed (neurons' parameters, Poisson spikes).
        add_to: add to this ``nengo.Network`` instead of a new one.

    Returns:
        A ``nengo.Network`` with Nodes ``input`` (C), ``state`` (C·d, the normalised state x the
        ensembles represent: the filtered recurrent spikes plus the filtered input), ``memory``
        (C·d, m = S x, comparable to ``LegendreMemory``'s state, channel-major), ``window``
        (C·len(r), channel-major) and ``memory_ensembles`` (list); Probes ``probe_state``,
        ``probe_memory``, ``probe_window``; arrays ``scale`` (d,), ``A_rec``, ``B_rec`` (the
        recurrent matrices on x), ``decoders`` (len(r), d: window = decoders @ m); and
        ``delay_steps`` = 1: ``probe_memory`` at step k ≈ the ZOH memory after input k − 1.
    """
    nengo = import_nengo()
    order = legendre.check_order(order)
    theta = _positive("theta", theta)
    dt = _positive("dt", dt)
    tau = _positive("tau", tau)
    channels = _count("channels", channels)
    mapping = _choice("mapping", mapping, MAPPINGS)
    k = _count("ensemble_dimensions", ensemble_dimensions)
    if order % k != 0:
        raise ValidationError("ensemble_dimensions", f"a divisor of order={order}", k)
    n_ens = channels * order // k
    n_neurons = _count("n_neurons", n_neurons, minimum=n_ens)
    if n_eval_points is not None:
        n_eval_points = _count("n_eval_points", n_eval_points)
    if theta <= dt:
        raise ValidationError("theta", f"a window longer than the step dt={dt:g} s", theta)
    s = _scale_vector(scale, order, theta, dt)
    Ar, Br = recurrent_matrices(order, theta, tau, dt, mapping)
    A_x = Ar * s[None, :] / s[:, None]  # S⁻¹ A' S
    B_x = Br / s
    dec = None
    if r is not None:
        dec = legendre.readout(order, list(r)).numpy()  # (R, d)
    out_fn = _input_output(input, channels, dt)
    if neuron_type is None:
        neuron_type = nengo.PoissonSpiking(nengo.LIFRate())
    if max_rates is None:
        max_rates = nengo.dists.Uniform(20, 40)
    if intercepts is None:
        intercepts = nengo.dists.Uniform(-1, 1)
    if n_eval_points is None:
        n_eval_points = int(np.clip(500 * k, 750, 2500))
    synapse = nengo.Lowpass(tau)
    net = (
        add_to if add_to is not None else nengo.Network(label=label or "LegendreMemory", seed=seed)
    )
    C, d = channels, order
    with net:
        if out_fn is None:
            net.input = nengo.Node(size_in=C, label="input")
        else:
            net.input = nengo.Node(out_fn, size_out=C, label="input")
        net.state = nengo.Node(size_in=C * d, label="state")
        net.memory = nengo.Node(size_in=C * d, label="memory")
        net.memory_ensembles = []
        sizes = iter(_split(n_neurons, n_ens))
        for c in range(C):
            sl = slice(c * d, (c + 1) * d)
            nengo.Connection(net.input[c], net.state[sl], transform=B_x[:, None], synapse=synapse)
            nengo.Connection(net.state[sl], net.memory[sl], transform=np.diag(s), synapse=None)
            for j in range(0, d, k):
                ens = nengo.Ensemble(
                    next(sizes),
                    k,
                    neuron_type=neuron_type,
                    max_rates=max_rates,
                    intercepts=intercepts,
                    n_eval_points=n_eval_points,
                    label=f"c{c}d{j}",
                )
                net.memory_ensembles.append(ens)
                nengo.Connection(net.state[c * d + j : c * d + j + k], ens, synapse=None)
                kw = {} if solver is None else {"solver": solver}
                nengo.Connection(
                    ens, net.state[sl], transform=A_x[:, j : j + k], synapse=synapse, **kw
                )
        net.probe_state = nengo.Probe(net.state, synapse=probe_synapse)
        net.probe_memory = nengo.Probe(net.memory, synapse=probe_synapse)
        net.window = None
        net.probe_window = None
        if dec is not None:
            R = len(dec)
            net.window = nengo.Node(size_in=C * R, label="window")
            for c in range(C):
                nengo.Connection(
                    net.state[c * d : (c + 1) * d],
                    net.window[c * R : (c + 1) * R],
                    transform=dec * s[None, :],
                    synapse=None,
                )
            net.probe_window = nengo.Probe(net.window, synapse=probe_synapse)
    net.scale, net.A_rec, net.B_rec, net.decoders = s, A_x, B_x, dec
    net.order, net.theta, net.tau, net.dt, net.channels = d, theta, tau, dt, C
    net.delay_steps = 1
    return net


# ------------------------------------------------------------------------------------ export
_RATE_NEURONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "RectifiedLinear"}


def to_nengo(
    module: torch.nn.Module,
    *,
    step: float = 1e-3,
    n_neurons: int = 1000,
    sim_dt: float | None = None,
    tau: float = 0.005,
    hidden: bool = True,
    input: Any = None,
    r: Sequence[float] | None = None,
    seed: int | None = None,
    **memory_options: Any,
) -> Any:
    """Export a torchlmu memory (and an Elman hidden layer) as a Nengo network.

    The window θ (``module.theta`` in units of the module's ``dt``, i.e. θ/dt steps) becomes
    θ/dt·``step`` seconds; the input encoders E (and the memory bias b) become a Node
    u = E x + b feeding the C memories built by :func:`memory_network` (spiking by default; pass
    ``neuron_type=nengo.LIFRate()`` for rates). With ``sim_dt = step`` (the default) and a ZOH
    module, the network's memory equals the module's, one simulator step late, up to the
    neurons' decoding error; a module discretised by Euler or bilinear gets the exact
    (ZOH) memory of the same θ instead.

    The Elman hidden layer h_t = f(W_m m_t + W_x x_t + W_h h_{t−1} + b) of an ``LMUCell``/``LMU``
    (``hidden=True``) is exported rate-only (f is not a spiking nonlinearity): an Ensemble of H
    ``nengo.Tanh``/``Sigmoid``/``RectifiedLinear`` neurons (gain 1, bias b, ``tau_ref = 1``, so
    rate = f(J)) driven through ``.neurons`` with those weights, or a Node for ``"linear"``;
    its recurrence goes through a one-step delay, as the module's h_{t−1}.

    Args:
        module: a ``LegendreMemory``, ``LMUCell`` or ``LMU`` (no ``hidden_to_memory`` or
            ``memory_to_memory`` connections: their loops have no step-exact NEF counterpart).
        step: seconds per step of the module.
        n_neurons: neurons of the memory, in total.
        sim_dt: the simulator's step in seconds (default ``step``).
        tau: recurrent synapse of the memory.
        hidden: export the Elman hidden layer (else, and for ``hidden_cell=None``, the output
            is the memory m_t alone, without the x_t that ``input_to_hidden`` appends).
        input: as :func:`memory_network`, with the module's input_size features.
        r: delays at which the memory network decodes its window (default none).
        seed: network seed.
        **memory_options: passed to :func:`memory_network` (neuron_type, max_rates, scale, ...).

    Returns:
        A ``nengo.Network`` with ``input`` (I), ``u`` (C), ``lmu_memory`` (the sub-network of
        :func:`memory_network`), ``output`` (H, or C·d without hidden layer) and ``probe_output``.
    """
    nengo = import_nengo()
    from .lmu import LMU, LMUCell
    from .memory import LegendreMemory

    cell = module.cell if isinstance(module, LMU) else module
    if isinstance(cell, LMUCell):
        if cell.hidden_to_memory or cell.memory_to_memory:
            raise ValidationError(
                "module",
                "an LMU without hidden_to_memory/memory_to_memory",
                f"hidden_to_memory={cell.hidden_to_memory}, memory_to_memory={cell.memory_to_memory}",
            )
        mem = cell.memory
    elif isinstance(cell, LegendreMemory):
        mem = cell
    else:
        raise ValidationError("module", "a LegendreMemory, LMUCell or LMU", type(module).__name__)
    step = _positive("step", step)
    sim_dt = step if sim_dt is None else _positive("sim_dt", sim_dt)
    from .hidden import ElmanHidden, NoHidden

    export_hidden = (
        bool(hidden) and isinstance(cell, LMUCell) and not isinstance(cell.hidden, NoHidden)
    )
    if export_hidden and not isinstance(cell.hidden, ElmanHidden):
        raise ValidationError(
            "module",
            "an Elman hidden layer (hidden_cell='tanh', 'relu', 'sigmoid' or 'linear') to export",
            f"hidden part {type(cell.hidden).__name__} (pass hidden=False to export the memory alone)",
        )
    theta_s = mem.theta / mem.dt * step
    I, C, d = mem.input_size, mem.channels, mem.order

    def numpy(p: torch.Tensor | None) -> np.ndarray | None:
        return None if p is None else p.detach().to(torch.float64).cpu().numpy()

    E, b = numpy(mem.input_encoders), numpy(mem.memory_bias)
    out_fn = _input_output(input, I, sim_dt)
    net = nengo.Network(label=f"torchlmu {type(module).__name__}", seed=seed)
    with net:
        if out_fn is None:
            net.input = nengo.Node(size_in=I, label="input")
        else:
            net.input = nengo.Node(out_fn, size_out=I, label="input")
        net.u = nengo.Node(size_in=C, label="u")
        nengo.Connection(net.input, net.u, transform=E, synapse=None)
        if b is not None:
            nengo.Connection(nengo.Node(b, label="memory_bias"), net.u, synapse=None)
        net.lmu_memory = memory_network(
            d,
            theta_s,
            n_neurons,
            dt=sim_dt,
            tau=tau,
            channels=C,
            r=r,
            seed=seed,
            **memory_options,
        )
        nengo.Connection(net.u, net.lmu_memory.input, synapse=None)
        if not export_hidden:
            net.output = net.lmu_memory.memory
        else:
            net.output = _hidden_layer(nengo, cell.hidden, net.input, net.lmu_memory.memory, numpy)
        net.probe_output = nengo.Probe(net.output, synapse=None)
    return net


def _hidden_layer(
    nengo: Any, cell: Any, x_node: Any, m_node: Any, numpy: Callable[[Any], Any]
) -> Any:
    """The Elman layer ``cell`` (an ElmanHidden) as rate neurons (or a Node for a linear
    activation)."""
    H = cell.hidden_size
    W_m, W_h, W_x, bias = (
        numpy(cell.memory_kernel),
        numpy(cell.hidden_kernel),
        numpy(cell.input_kernel),
        numpy(cell.bias),
    )
    bias = np.zeros(H) if bias is None else bias
    delay = nengo.LinearFilter([1], [1, 0], analog=False)  # z⁻¹: h_{t−1}
    if cell.activation == "linear":
        pre = nengo.Node(size_in=H, label="hidden")
        nengo.Connection(nengo.Node(bias, label="hidden_bias"), pre, synapse=None)
        target, out = pre, pre
    else:
        neuron = getattr(nengo, _RATE_NEURONS[cell.activation])
        kw = {"amplitude": 1.0} if cell.activation == "relu" else {"tau_ref": 1.0}
        ens = nengo.Ensemble(
            H,
            1,
            neuron_type=neuron(**kw),
            gain=np.ones(H),
            bias=bias,
            label="hidden",
        )
        target, out = ens.neurons, ens.neurons
    nengo.Connection(m_node, target, transform=W_m, synapse=None)
    if W_x is not None:  # the memory lags one step: so does x, to pair x_t with m_t
        nengo.Connection(x_node, target, transform=W_x, synapse=delay)
    nengo.Connection(out, target, transform=W_h, synapse=delay)
    return out
