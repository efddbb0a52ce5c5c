"""Deep LMU networks: residual blocks around the parallel Legendre memory, and a sequence model.

A block (:class:`LMUBlock`) is the LMU's linear time-invariant memory used as a sequence-mixing
layer, the way deep state-space models stack theirs (pre-norm, one residual per block)::

    z_t = LayerNorm(h_t)                                  (B, D_in)
    m_t = Ā m_{t−1} + B̄ (E z_t)   per channel             (B, C·d)   parallel over all t
    y_t = act(W m_t + b)   [+ W' m'_t of the reversed sequence when bidirectional]
    out_t = P h_t + Dropout(FFN(Dropout(y_t)))            (B, D_out)

with FFN a gated linear unit (``Linear(D_out, 2·D_out)`` then GLU) or an MLP, and P the identity
(or a learned ``Linear`` when the width changes). The memory computes W·m_t for every step at
once without the states (:meth:`~torchlmu.LegendreMemory.project`: one FFT by default, whose
cost does not grow with the order d); nothing in the block steps over time during training.

Because the memory is a linear recurrence, a causal block also runs step by step with the same
weights (``step``): O(C·d + D²) per step, no window of past inputs kept. :class:`DeepLMU`
stacks blocks between an input encoder and a pooled head, and streams the same way, 'mean'
pooling as a running mean. The streamed outputs equal the parallel ones up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    check_choice,
    check_fraction,
    check_input_step,
    check_int,
    check_state_tensor,
    prepare_sequence,
)
from .exceptions import ModeError, ValidationError
from .memory import LegendreMemory

__all__ = ["DeepLMU", "DeepLMUState", "LMUBlock"]

FFN_KINDS = ("glu", "mlp")
POOLINGS = ("last", "mean", "none")
_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh, "identity": lambda y: y}


def _dropout(y: Tensor, p: float, training: bool, tied: bool) -> Tensor:
    """Inverted dropout of y ``(T, B, D)`` (or one step ``(B, D)``). ``tied``: one mask per
    sequence and feature for every step (as deep state-space models drop; drawing a T-times
    smaller mask also costs a fraction of per-element dropout on a CPU, measured 2 ms against
    25 ms for 784×100×64); a single step always draws per element."""
    if not training or p == 0.0:
        return y
    if not tied or y.dim() < 3:
        return F.dropout(y, p, True)
    keep = torch.rand((1, *y.shape[1:]), dtype=y.dtype, device=y.device) >= p
    return y * (keep.to(y.dtype) / (1.0 - p))


class LMUBlock(nn.Module):
    r"""One residual block: LayerNorm → Legendre memory → projection of its states → activation
    → dropout → position-wise GLU or MLP → dropout, added to the (projected) input.

    Args:
        input_size: D_in, features of the block's input.
        order: d, Legendre coefficients per memory channel.
        theta: the memory's window θ in steps.
        output_size: D_out (default D_in); when it differs the residual path is a bias-free
            ``Linear(D_in, D_out)``.
        channels: C, memory channels: u = E·LayerNorm(h) ∈ R^C, states C·d.
        ffn: ``"glu"`` (``Linear(D_out, 2·D_out)`` then a gated linear unit) or ``"mlp"``
            (``Linear(D_out, expand·D_out)``, GELU, dropout, ``Linear(expand·D_out, D_out)``).
        expand: the MLP's hidden width as a multiple of D_out (``ffn="mlp"`` only).
        dropout: dropout rate after the memory's activation and after the FFN (and inside the MLP).
        tie_dropout: one dropout mask per sequence and feature, kept for every step (default),
            instead of one per element.
        activation: after the projection of the states: ``"gelu"``, ``"relu"``, ``"tanh"`` or
            ``"identity"``.
        bidirectional: add a second memory over the reversed sequence (its own encoders and
            projection): every output then depends on the whole sequence, so the block no
            longer streams.
        conv: how the memory is computed in parallel (see :class:`~torchlmu.LegendreMemory`):
            ``"fft"`` (default: its cost is independent of d), ``"chunk"`` or ``"direct"``.
        trainable_theta, method: passed to the memory (:class:`~torchlmu.LegendreMemory`).
        batch_first: input and output ``(B, T, ·)`` instead of ``(T, B, ·)``.

    Shapes:
        ``forward``: x ``(T, B, D_in)`` (``(B, T, D_in)`` with ``batch_first``) or unbatched
        ``(T, D_in)`` -> the same layout with D_out features.
        ``step``: x_t ``(B, D_in)`` or ``(D_in,)``, state ``(B, C·d)`` or ``(C·d,)`` (None: zero)
        -> (out_t ``(B, D_out)``, state).
    """

    def __init__(
        self,
        input_size: int,
        order: int,
        theta: float,
        output_size: int | None = None,
        *,
        channels: int = 1,
        ffn: str = "glu",
        expand: int = 2,
        dropout: float = 0.0,
        tie_dropout: bool = True,
        activation: str = "gelu",
        bidirectional: bool = False,
        conv: str = "fft",
        trainable_theta: bool = False,
        method: str = "zoh",
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.tie_dropout = bool(tie_dropout)
        self.input_size = check_int("input_size", input_size)
        self.output_size = (
            self.input_size if output_size is None else check_int("output_size", output_size)
        )
        self.ffn_kind = check_choice("ffn", ffn, FFN_KINDS)
        self.expand = check_int("expand", expand)
        self.dropout = check_fraction("dropout", dropout)
        self.activation = check_choice("activation", activation, tuple(_ACTIVATIONS))
        self._act = _ACTIVATIONS[self.activation]
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        D, Do = self.input_size, self.output_size
        mem = dict(
            channels=channels,
            conv=conv,
            trainable_theta=trainable_theta,
            method=method,
            **fk,
        )
        self.norm = nn.LayerNorm(D, **fk)
        self.memory = LegendreMemory(D, order, theta, **mem)
        self.readout = nn.Linear(self.memory.state_size, Do, **fk)  # W, b on m_t
        if self.bidirectional:
            self.memory_reverse = LegendreMemory(D, order, theta, **mem)
            self.readout_reverse = nn.Linear(self.memory.state_size, Do, bias=False, **fk)
        else:
            self.memory_reverse = self.readout_reverse = None
        if self.ffn_kind == "glu":
            self.ffn_in = nn.Linear(Do, 2 * Do, **fk)
            self.ffn_out = None
        else:
            self.ffn_in = nn.Linear(Do, self.expand * Do, **fk)
            self.ffn_out = nn.Linear(self.expand * Do, Do, **fk)
        self.skip = None if D == Do else nn.Linear(D, Do, bias=False, **fk)
        self.reset_parameters()

    @property
    def order(self) -> int:
        return self.memory.order

    @property
    def channels(self) -> int:
        return self.memory.channels

    @property
    def theta(self) -> float:
        return self.memory.theta

    @property
    def state_size(self) -> int:
        """C·d, the size of the streaming state."""
        return self.memory.state_size

    def reset_parameters(self) -> None:
        """LayerNorm to (1, 0), the memories' encoders LeCun-uniform, every Linear as
        ``nn.Linear`` initialises it."""
        self.norm.reset_parameters()
        for m in (self.memory, self.memory_reverse):
            if m is not None:
                m.reset_parameters()
        for lin in (self.readout, self.readout_reverse, self.ffn_in, self.ffn_out, self.skip):
            if lin is not None:
                lin.reset_parameters()

    # ------------------------------------------------------------------------------ parallel
    def _tail(self, h: Tensor, y: Tensor) -> Tensor:
        """Position-wise part after the memory's projection: ``(..., D_in)``, ``(..., D_out)``
        -> ``(..., D_out)`` (shared by the parallel and the streaming forms)."""
        y = self.drop(self._act(y))
        if self.ffn_out is None:
            y = F.glu(self.ffn_in(y), dim=-1)
        else:
            y = self.ffn_out(self.drop(F.gelu(self.ffn_in(y))))
        return (h if self.skip is None else self.skip(h)) + self.drop(y)

    def drop(self, y: Tensor) -> Tensor:
        """This block's dropout (see ``tie_dropout``)."""
        return _dropout(y, self.dropout, self.training, self.tie_dropout)

    def forward_time_major(self, h: Tensor) -> Tensor:
        """The block on validated time-major input: ``(T, B, D_in)`` -> ``(T, B, D_out)``."""
        z = self.norm(h)
        y = self.memory.project(z, self.readout.weight) + self.readout.bias
        if self.memory_reverse is not None:
            back = self.memory_reverse.project(z.flip(0), self.readout_reverse.weight)
            y = y + back.flip(0)
        return self._tail(h, y)

    def forward_last(self, h: Tensor) -> Tensor:
        """The block's output at the last step alone, ``(T, B, D_in)`` -> ``(B, D_out)``: the
        memory's last state by one matmul (:meth:`~torchlmu.LegendreMemory.last`) and the
        position-wise part at one step instead of T (what a 'last'-pooled model needs of its
        final block). Bidirectional: the reversed memory has seen only the last step there."""
        z = self.norm(h)
        y = self.readout(self.memory.last(z).flatten(-2))
        if self.memory_reverse is not None:
            y = y + self.readout_reverse(self.memory_reverse.last(z[-1:]).flatten(-2))
        return self._tail(h[-1], y)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(T, B, D_in)`` (``(B, T, D_in)`` with ``batch_first``) or ``(T, D_in)`` -> the
        same layout with D_out features."""
        dtype = self.memory.input_encoders.dtype
        h, batched = prepare_sequence("input", x, self.input_size, self.batch_first, dtype)
        y = self.forward_time_major(h)
        if not batched:
            return y.squeeze(1)
        return y.transpose(0, 1) if self.batch_first else y

    # ----------------------------------------------------------------------------- streaming
    def initial_state(self, batch: int | None = None) -> Tensor:
        """Zero memory state ``(batch, C·d)``, or ``(C·d,)`` when ``batch`` is None."""
        return self.memory.initial_state(batch)

    def step_(self, h: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
        """One step on validated tensors: h_t ``(..., D_in)``, m_{t−1} ``(..., C·d)`` ->
        (out_t ``(..., D_out)``, m_t)."""
        m = self.memory.advance(m, self.memory.encode(self.norm(h)))
        return self._tail(h, self.readout(m)), m

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step of a causal block: x_t ``(B, D_in)`` or ``(D_in,)``, state ``(B, C·d)`` or
        ``(C·d,)`` (None: zero) -> (out_t ``(B, D_out)`` or ``(D_out,)``, state)."""
        self._check_causal("LMUBlock.step")
        dtype = self.memory.input_encoders.dtype
        x = check_input_step("input", x, self.input_size, dtype)
        lead = x.shape[:-1]
        if state is None:
            state = self.initial_state(x.shape[0] if x.dim() == 2 else None)
        check_state_tensor("state", state, (*lead, self.state_size), dtype)
        return self.step_(x, state)

    def _check_causal(self, what: str) -> None:
        if self.bidirectional:
            raise ModeError(
                f"{what}: streaming needs causal blocks (bidirectional=False); a bidirectional "
                "block's output at step t depends on later steps: run forward on whole sequences"
            )

    def extra_repr(self) -> str:
        s = f"{self.input_size}"
        if self.output_size != self.input_size:
            s += f", {self.output_size}"
        s += f", order={self.order}, theta={self.theta:g}, channels={self.channels}"
        s += f", ffn={self.ffn_kind!r}"
        if self.ffn_kind == "mlp":
            s += f", expand={self.expand}"
        if self.dropout:
            s += f", dropout={self.dropout:g}"
            if not self.tie_dropout:
                s += ", tie_dropout=False"
        if self.activation != "gelu":
            s += f", activation={self.activation!r}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.memory.conv != "fft":
            s += f", conv={self.memory.conv!r}"
        if self.batch_first:
            s += ", batch_first=True"
        return s


class DeepLMUState(NamedTuple):
    """Streaming state of a :class:`DeepLMU`: one memory state ``(B, C_i·d_i)`` per block;
    for ``pooling="mean"`` the running sum of the normalised features ``(B, D)`` and the number
    of steps seen ``(B, 1)`` (None otherwise)."""

    memories: tuple[Tensor, ...]
    total: Tensor | None = None
    count: Tensor | None = None


def _per_block(name: str, value: object, n: int, check) -> list:
    """``value`` for each of ``n`` blocks: one value for all, or a sequence of n values."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValidationError(
                name, f"one value or {n} values (one per block)", f"{len(value)} values"
            )
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [check(name, value)] * n


def _check_theta(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(name, "a number > 0", repr(value))
    return float(value)


class DeepLMU(nn.Module):
    """A sequence model of stacked :class:`LMUBlock`: ``Linear`` encoder, blocks, final
    LayerNorm, pooling over time, ``Linear`` head. A classifier (logits) or regressor.

    Args:
        input_size: features per step of the input.
        output_size: outputs (classes for a classifier, targets for a regressor).
        d_model: block width D; one value, or one per block (a block whose width changes
            projects its residual path).
        num_blocks: the number of blocks.
        order, theta, channels: the memory of each block (one value, or one per block).
        pooling: ``"last"`` (the last step's features), ``"mean"`` (the mean over steps) or
            ``"none"`` (an output at every step: a sequence-to-sequence model).
        ffn, expand, dropout, tie_dropout, activation: of every block (see :class:`LMUBlock`);
            ``dropout`` also applies after the encoder.
        bidirectional, conv, trainable_theta, method: of every block (see :class:`LMUBlock`).
        batch_first: input ``(B, T, I)`` (and per-step output ``(B, T, O)``) instead of
            ``(T, B, I)``.

    Shapes:
        ``forward``: x ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``) or ``(T, I)`` ->
        ``(B, O)`` (``(O,)`` unbatched), or per step ``(T, B, O)`` with ``pooling="none"``.
        ``step``: x_t ``(B, I)`` -> (y_t ``(B, O)``, :class:`DeepLMUState`): y_t is what
        ``forward`` returns for the sequence x_0 … x_t (for ``"none"``: its last step).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int | Sequence[int] = 128,
        num_blocks: int = 4,
        order: int | Sequence[int] = 64,
        theta: float | Sequence[float] = 784.0,
        *,
        channels: int | Sequence[int] = 1,
        pooling: str = "last",
        ffn: str = "glu",
        expand: int = 2,
        dropout: float = 0.0,
        tie_dropout: bool = True,
        activation: str = "gelu",
        bidirectional: bool = False,
        conv: str = "fft",
        trainable_theta: bool = False,
        method: str = "zoh",
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.tie_dropout = bool(tie_dropout)
        self.input_size = check_int("input_size", input_size)
        self.output_size = check_int("output_size", output_size)
        self.num_blocks = check_int("num_blocks", num_blocks)
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.batch_first = bool(batch_first)
        self.dropout = check_fraction("dropout", dropout)
        n = self.num_blocks
        widths = _per_block("d_model", d_model, n, check_int)
        orders = _per_block("order", order, n, check_int)
        thetas = _per_block("theta", theta, n, _check_theta)
        chans = _per_block("channels", channels, n, check_int)
        self.encoder = nn.Linear(self.input_size, widths[0], **fk)
        self.blocks = nn.ModuleList(
            LMUBlock(
                widths[max(i - 1, 0)],
                orders[i],
                thetas[i],
                widths[i],
                channels=chans[i],
                ffn=ffn,
                expand=expand,
                dropout=dropout,
                tie_dropout=tie_dropout,
                activation=activation,
                bidirectional=bidirectional,
                conv=conv,
                trainable_theta=trainable_theta,
                method=method,
                **fk,
            )
            for i in range(n)
        )
        self.bidirectional = self.blocks[0].bidirectional
        self.norm = nn.LayerNorm(widths[-1], **fk)
        self.head = nn.Linear(widths[-1], self.output_size, **fk)
        self.reset_parameters()

    def drop(self, y: Tensor) -> Tensor:
        """The dropout after the encoder (see ``tie_dropout``)."""
        return _dropout(y, self.dropout, self.training, self.tie_dropout)

    @property
    def d_model(self) -> int:
        """The width of the last block (the head's input)."""
        return self.head.in_features

    def reset_parameters(self) -> None:
        """Every submodule's own initialisation (see :meth:`LMUBlock.reset_parameters`)."""
        self.encoder.reset_parameters()
        for b in self.blocks:
            b.reset_parameters()
        self.norm.reset_parameters()
        self.head.reset_parameters()

    # ------------------------------------------------------------------------------ parallel
    def features(self, x: Tensor, last: bool = False) -> Tensor:
        """The normalised features of the last block at every step, ``(T, B, D)``, from
        validated time-major x ``(T, B, I)``; with ``last`` at the last step only, ``(B, D)``
        (the final block then computes one step: :meth:`LMUBlock.forward_last`)."""
        h = self.drop(self.encoder(x))
        for b in self.blocks[:-1]:
            h = b.forward_time_major(h)
        final = self.blocks[-1]
        return self.norm(final.forward_last(h) if last else final.forward_time_major(h))

    def forward(self, x: Tensor) -> Tensor:
        """x ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``) or ``(T, I)`` -> ``(B, O)``
        (or per step with ``pooling="none"``; unbatched without the B dimension)."""
        h, batched = prepare_sequence(
            "input", x, self.input_size, self.batch_first, self.head.weight.dtype
        )
        if self.pooling == "last":
            y = self.head(self.features(h, last=True))
        elif self.pooling == "mean":
            y = self.head(self.features(h).mean(0))
        else:
            y = self.head(self.features(h))
            if not batched:
                return y.squeeze(1)
            return y.transpose(0, 1) if self.batch_first else y
        return y if batched else y.squeeze(0)

    # ----------------------------------------------------------------------------- streaming
    def initial_state(self, batch: int) -> DeepLMUState:
        """The state before the first step, for ``batch`` sequences."""
        mems = tuple(b.initial_state(batch) for b in self.blocks)
        if self.pooling != "mean":
            return DeepLMUState(mems)
        w = self.head.weight
        zeros = torch.zeros(batch, self.d_model, dtype=w.dtype, device=w.device)
        return DeepLMUState(mems, zeros, torch.zeros(batch, 1, dtype=w.dtype, device=w.device))

    def check_state(self, state: object, batch: int) -> DeepLMUState:
        """Validate a user state (None gives the zero state)."""
        if state is None:
            return self.initial_state(batch)
        if not isinstance(state, DeepLMUState):
            raise ValidationError("state", "a DeepLMUState", type(state).__name__)
        if len(state.memories) != self.num_blocks:
            raise ValidationError(
                "state.memories",
                f"{self.num_blocks} tensors (one per block)",
                f"{len(state.memories)}",
            )
        dtype = self.head.weight.dtype
        for i, (b, m) in enumerate(zip(self.blocks, state.memories, strict=True)):
            check_state_tensor(f"state.memories[{i}]", m, (batch, b.state_size), dtype)
        if self.pooling == "mean":
            check_state_tensor("state.total", state.total, (batch, self.d_model), dtype)
            check_state_tensor("state.count", state.count, (batch, 1), dtype)
        elif state.total is not None or state.count is not None:
            raise ValidationError(
                "state.total, state.count", f"None for pooling={self.pooling!r}", "tensors"
            )
        return state

    def step_(self, x: Tensor, state: DeepLMUState) -> tuple[Tensor, DeepLMUState]:
        """One step on validated tensors: x_t ``(B, I)`` -> (y_t ``(B, O)``, state)."""
        h = self.drop(self.encoder(x))
        mems = []
        for b, m in zip(self.blocks, state.memories, strict=True):
            h, m = b.step_(h, m)
            mems.append(m)
        f = self.norm(h)
        if self.pooling != "mean":
            return self.head(f), DeepLMUState(tuple(mems))
        total, count = state.total + f, state.count + 1
        return self.head(total / count), DeepLMUState(tuple(mems), total, count)

    def step(self, x: Tensor, state: DeepLMUState | None = None) -> tuple[Tensor, DeepLMUState]:
        """One step of a causal model: x_t ``(B, I)`` -> (y_t ``(B, O)``, state); y_t equals
        ``forward`` on the steps seen so far. Raises :class:`~torchlmu.ModeError` for a
        bidirectional model."""
        self.blocks[0]._check_causal("DeepLMU.step")
        x = check_input_step("input", x, self.input_size, self.head.weight.dtype)
        if x.dim() != 2:
            raise ValidationError("input", f"shape (B, {self.input_size})", tuple(x.shape))
        return self.step_(x, self.check_state(state, x.shape[0]))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.output_size}, num_blocks={self.num_blocks}"
        s += f", pooling={self.pooling!r}"
        if self.dropout:
            s += f", dropout={self.dropout:g}"
        if self.batch_first:
            s += ", batch_first=True"
        return s
