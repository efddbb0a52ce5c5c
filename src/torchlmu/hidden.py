"""The hidden stage of an LMU: what turns the memory m_t (and x_t) into the layer's output.

One type per kind of hidden part, chosen once when the layer is built (:func:`make_hidden`):

============================  ============================================  ==================
type                          y_t                                           state after memory
============================  ============================================  ==================
:class:`ElmanHidden`          f(W_m m_t + W_x x_t + W_h h_{t−1} + b)        (h,)
:class:`TorchCellHidden`      ``nn.RNNCell``/``LSTMCell``/``GRUCell``       (h,) or (h, c)
                              on z_t = [m_t, x_t]
:class:`CustomCellHidden`     your cell (the :class:`HiddenCell` protocol)  your tuple
:class:`PositionwiseHidden`   module(z_t) (feed-forward)                    (y_T,)
:class:`NoHidden`             z_t                                           ()
============================  ============================================  ==================

Each type owns its weights and its step; a recurrent type whose input is a linear map of z_t
(Elman and the torch cells) exposes that map (:meth:`HiddenPart.input_weights`), so that the
layer computes W·m_t for all t in parallel from the memory and the type only runs its own
recurrence over the pre-activations (:meth:`HiddenPart.scan`: the hand-written Elman scan, or
a loop).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._checks import check_choice
from .exceptions import ValidationError
from .recurrence import ACTIVATIONS, activation_fn, cell_recur, cell_scan, elman_scan

__all__ = [
    "CustomCellHidden",
    "ElmanHidden",
    "HiddenCell",
    "HiddenPart",
    "NoHidden",
    "PositionwiseHidden",
    "TorchCellHidden",
    "make_hidden",
]

State = tuple[Tensor, ...]


@runtime_checkable
class HiddenCell(Protocol):
    """What a user's own recurrent cell provides to serve as an LMU's hidden part.

    ``forward(z, state) -> (y, state)`` with z ``(B, Z)`` (Z = C·d, + input_size with
    ``input_to_hidden``) and state a tuple of one or two ``(B, hidden_size)`` tensors (they
    become :class:`~torchlmu.LMUState`'s ``hidden`` and ``cell``); ``initial_state(batch, like)``
    returns the zero state for ``batch`` sequences on ``like``'s device and dtype.
    """

    hidden_size: int

    def initial_state(self, batch: int, like: Tensor) -> State: ...

    def forward(self, z: Tensor, state: State) -> tuple[Tensor, State]: ...


class HiddenPart(nn.Module):
    """Base of the hidden types. ``in_memory`` = C·d, ``in_input`` = input features it sees
    (0 without ``input_to_hidden``), ``hidden_size`` = H (its output size)."""

    #: how many state tensors follow the memory in LMUState (0, 1 or 2)
    n_states: int = 1
    #: y_t depends on z_t alone: applied to all steps at once
    positionwise: bool = False

    def __init__(self, in_memory: int, in_input: int, hidden_size: int) -> None:
        super().__init__()
        self.in_memory = in_memory
        self.in_input = in_input
        self.hidden_size = hidden_size

    def reset_parameters(self) -> None:
        """Initialise the type's own weights (none here)."""

    def initial_state(self, batch: int, like: Tensor) -> State:
        return tuple(like.new_zeros((batch, self.hidden_size)) for _ in range(self.n_states))

    def input_weights(self) -> tuple[Tensor, Tensor | None, Tensor | None] | None:
        """(W_mem ``(G, C·d)``, W_x ``(G, I)`` or None, b ``(G,)`` or None) when the type's input
        is a linear map of z_t followed by :meth:`recur`; else None."""
        return None

    def recur(self, pre: Tensor, state: State) -> State:
        """One step from the input projection ``pre`` ``(B, G)`` (types with input weights)."""
        raise NotImplementedError

    def step(self, z: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: y_t and the new state from z_t ``(B, Z)``; the reference of every path."""
        W_mem, W_x, b = self.input_weights()  # type: ignore[misc]
        W = W_mem if W_x is None else torch.cat([W_mem, W_x], 1)
        pre = z @ W.T if b is None else torch.addmm(b, z, W.T)
        new = self.recur(pre, state)
        return new[0], new

    def scan(
        self, pre: Tensor, state: State, lengths: Tensor | None, sequences: bool
    ) -> tuple[Tensor, State]:
        """The recurrence over every step's input projection ``pre`` ``(T, B, G)`` (time-major,
        contiguous; may be overwritten) for types with input weights, or over every z_t
        ``(T, B, Z)`` otherwise. Returns the outputs ``(T, B, H)`` (zero past ``lengths``) or,
        without ``sequences``, the last valid output ``(B, H)``, and the state at each
        sequence's last valid step."""
        raise NotImplementedError


class ElmanHidden(HiddenPart):
    """The paper's hidden layer h_t = f(W_m m_t + W_x x_t + W_h h_{t−1} + b), f one of
    ``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"``; Xavier-normal kernels, zero bias."""

    def __init__(
        self,
        in_memory: int,
        in_input: int,
        hidden_size: int,
        activation: str = "tanh",
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_memory, in_input, hidden_size)
        self.activation = check_choice("hidden_cell", activation, tuple(ACTIVATIONS))
        self._act = activation_fn(self.activation)
        fk = {"device": device, "dtype": dtype}
        H = hidden_size
        self.memory_kernel = nn.Parameter(torch.empty(H, in_memory, **fk))
        self.input_kernel = nn.Parameter(torch.empty(H, in_input, **fk)) if in_input else None
        self.hidden_kernel = nn.Parameter(torch.empty(H, H, **fk))
        self.bias = nn.Parameter(torch.empty(H, **fk)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.memory_kernel, self.input_kernel, self.hidden_kernel):
            if w is not None:
                nn.init.xavier_normal_(w)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def input_weights(self):
        return self.memory_kernel, self.input_kernel, self.bias

    def recur(self, pre: Tensor, state: State) -> State:
        return (self._act(pre + state[0] @ self.hidden_kernel.T),)

    def scan(self, pre, state, lengths, sequences):
        """The hand-written Elman scan (:func:`~torchlmu.recurrence.elman_scan`); with lengths
        it runs past each end (the inputs there are the zero-padded memory's) and takes each
        sequence's state at its last valid step."""
        h0 = state[0]
        if lengths is None:
            Hs, h = elman_scan(
                pre, h0, self.hidden_kernel, self.activation, inplace=True, return_last=True
            )
            return (Hs if sequences else h), (h,)
        Hs = elman_scan(pre, h0, self.hidden_kernel, self.activation, inplace=True)
        h = Hs[lengths - 1, torch.arange(Hs.shape[1], device=Hs.device)]
        if not sequences:
            return h, (h,)
        valid = torch.arange(Hs.shape[0], device=Hs.device).unsqueeze(1) < lengths
        return torch.where(valid.unsqueeze(-1), Hs, Hs.new_zeros(())), (h,)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, bias={self.bias is not None}"


class TorchCellHidden(HiddenPart):
    """An ``nn.RNNCell``, ``nn.LSTMCell`` or ``nn.GRUCell`` fed z_t = [m_t, x_t], stepped by
    PyTorch's documented equations on its own weights (``self.cell``)."""

    def __init__(self, cell: nn.RNNCellBase, in_memory: int, in_input: int) -> None:
        super().__init__(in_memory, in_input, cell.hidden_size)
        Z = in_memory + in_input
        if cell.input_size != Z:
            raise ValidationError(
                "hidden_cell",
                f"input_size={Z} (C·d{' + input_size' if in_input else ''})",
                f"input_size={cell.input_size}",
            )
        self.cell = cell
        self.n_states = 2 if isinstance(cell, nn.LSTMCell) else 1
        if isinstance(cell, nn.LSTMCell):
            self.kind = "lstm"
        elif isinstance(cell, nn.GRUCell):
            self.kind = "gru"
        else:
            self.kind = f"rnn_{cell.nonlinearity}"

    def reset_parameters(self) -> None:
        self.cell.reset_parameters()

    def input_weights(self):
        W, S = self.cell.weight_ih, self.in_memory
        return W[:, :S], (W[:, S:] if self.in_input else None), self.cell.bias_ih

    def recur(self, pre: Tensor, state: State) -> State:
        c = state[1] if self.n_states == 2 else None
        h, c = cell_recur(self.kind, pre, state[0], c, self.cell.weight_hh, self.cell.bias_hh)
        return (h,) if c is None else (h, c)

    def scan(self, pre, state, lengths, sequences):
        """:func:`~torchlmu.recurrence.cell_scan` (one operator in a compiled graph)."""
        c0 = state[1] if self.n_states == 2 else None
        ys, h, c = cell_scan(
            self.kind, pre, state[0], c0, self.cell.weight_hh, self.cell.bias_hh, lengths
        )
        return (ys if sequences else h), ((h,) if c is None else (h, c))


class CustomCellHidden(HiddenPart):
    """A user's recurrent cell (the :class:`HiddenCell` protocol), stepped over every state."""

    def __init__(self, cell: nn.Module, in_memory: int, in_input: int) -> None:
        super().__init__(in_memory, in_input, int(cell.hidden_size))
        self.cell = cell
        with torch.no_grad():
            probe = cell.initial_state(1, torch.zeros(()))
        if not isinstance(probe, tuple) or not 1 <= len(probe) <= 2:
            raise ValidationError(
                "hidden_cell.initial_state", "a tuple of one or two tensors", type(probe).__name__
            )
        self.n_states = len(probe)

    def reset_parameters(self) -> None:
        if hasattr(self.cell, "reset_parameters"):
            self.cell.reset_parameters()

    def initial_state(self, batch: int, like: Tensor) -> State:
        return tuple(self.cell.initial_state(batch, like))

    def step(self, z: Tensor, state: State) -> tuple[Tensor, State]:
        y, new = self.cell(z, state)
        return y, tuple(new)

    def scan(self, z, state, lengths, sequences):
        """Over every step's z ``(T, B, Z)`` (this type has no input projection)."""
        ys = []
        for t in range(z.shape[0]):
            y, new = self.step(z[t], state)
            if lengths is not None:
                active = (t < lengths).unsqueeze(-1)
                new = tuple(torch.where(active, n, o) for n, o in zip(new, state, strict=True))
                y = torch.where(active, y, torch.zeros_like(y))
            ys.append(y)
            state = new
        if sequences:
            return torch.stack(ys, 0), state
        return state[0], state


class PositionwiseHidden(HiddenPart):
    """A feed-forward module applied to every z_t = [m_t, x_t] (``nn.Linear``,
    ``nn.Sequential``, …); its state is the last output."""

    positionwise = True

    def __init__(self, module: nn.Module, in_memory: int, in_input: int, hidden_size: int):
        super().__init__(in_memory, in_input, hidden_size)
        self.module = module

    def reset_parameters(self) -> None:
        for m in self.module.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def step(self, z: Tensor, state: State) -> tuple[Tensor, State]:
        y = self.module(z)
        if y.shape[-1] != self.hidden_size:
            raise ValidationError(
                "hidden_cell", f"an output of size hidden_size={self.hidden_size}", y.shape[-1]
            )
        return y, (y,)


class NoHidden(HiddenPart):
    """No hidden part: the output is z_t = [m_t, x_t]."""

    n_states = 0
    positionwise = True

    def __init__(self, in_memory: int, in_input: int) -> None:
        super().__init__(in_memory, in_input, in_memory + in_input)

    def step(self, z: Tensor, state: State) -> tuple[Tensor, State]:
        return z, ()


def make_hidden(
    hidden_cell: object,
    in_memory: int,
    in_input: int,
    hidden_size: int | None,
    bias: bool,
    device=None,
    dtype=None,
) -> HiddenPart:
    """The hidden type for ``LMUCell``'s ``hidden_cell`` argument (see the module docstring)."""
    Z = in_memory + in_input
    if hidden_cell is None:
        if hidden_size is not None and hidden_size != Z:
            raise ValidationError(
                "hidden_size", f"None or {Z} (the memory output) with hidden_cell=None", hidden_size
            )
        return NoHidden(in_memory, in_input)
    if isinstance(hidden_cell, nn.RNNBase):
        raise ValidationError(
            "hidden_cell",
            "a cell (one step), such as nn.LSTMCell",
            f"the sequence module {type(hidden_cell).__name__}",
            hint=f"pass nn.{type(hidden_cell).__name__}Cell({Z}, {hidden_size}) instead",
        )
    if isinstance(hidden_cell, str):
        return ElmanHidden(
            in_memory, in_input, _size(hidden_size), hidden_cell, bias, device, dtype
        )
    if isinstance(hidden_cell, nn.RNNCellBase) and not isinstance(
        hidden_cell, (nn.RNNCell, nn.LSTMCell, nn.GRUCell)
    ):
        raise ValidationError(
            "hidden_cell", "nn.RNNCell, nn.LSTMCell or nn.GRUCell", type(hidden_cell).__name__
        )
    recurrent = isinstance(hidden_cell, (nn.RNNCellBase, HiddenCell))
    if recurrent and isinstance(hidden_cell, nn.Module):
        if hidden_cell.hidden_size != hidden_size:
            raise ValidationError(
                "hidden_cell",
                f"hidden_size={hidden_size}",
                f"hidden_size={hidden_cell.hidden_size}",
            )
        kind = TorchCellHidden if isinstance(hidden_cell, nn.RNNCellBase) else CustomCellHidden
        return kind(hidden_cell, in_memory, in_input)
    if isinstance(hidden_cell, nn.Module):
        return PositionwiseHidden(hidden_cell, in_memory, in_input, _size(hidden_size))
    raise ValidationError(
        "hidden_cell",
        f"an activation name in {tuple(ACTIVATIONS)}, an nn.Module or None",
        repr(hidden_cell),
    )


def _size(hidden_size: object) -> int:
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValidationError("hidden_size", "an integer >= 1", repr(hidden_size))
    return hidden_size
