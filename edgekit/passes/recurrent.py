"""Unrolled GRU and LSTM built from linear layers and elementwise ops, numerically the same as torch's.

coremltools 9.0 cannot convert torch 2.13's nn.GRU (traced: "only 0-dimensional arrays can be converted to
Python scalars"; through torch.export: "Unsupported fx node gru"). Swapping the recurrent layer for this
unrolled form before conversion gives the converter only ops it handles, at the window length the model
was traced with.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.errors import BadInputError


class UnrolledRNN(nn.Module):
    """A single-layer, unidirectional, batch_first GRU or LSTM with the original module's weights."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        if rnn.num_layers != 1 or rnn.bidirectional or not rnn.batch_first or getattr(rnn, "proj_size", 0):
            raise BadInputError(f"{type(rnn).__name__}: only single-layer, unidirectional, batch_first recurrent layers can be "
                                "unrolled; fix: simplify the layer")
        self.kind = "gru" if isinstance(rnn, nn.GRU) else "lstm"
        self.hidden = rnn.hidden_size
        self.weight_ih, self.weight_hh = nn.Parameter(rnn.weight_ih_l0.detach().clone()), nn.Parameter(rnn.weight_hh_l0.detach().clone())
        zeros = torch.zeros(self.weight_ih.shape[0])
        self.bias_ih = nn.Parameter(rnn.bias_ih_l0.detach().clone() if rnn.bias else zeros)
        self.bias_hh = nn.Parameter(rnn.bias_hh_l0.detach().clone() if rnn.bias else zeros.clone())

    def forward(self, x: torch.Tensor):
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outputs = []
        for t in range(x.shape[1]):
            gi = F.linear(x[:, t], self.weight_ih, self.bias_ih)
            gh = F.linear(h, self.weight_hh, self.bias_hh)
            if self.kind == "gru":
                i_r, i_z, i_n = gi.chunk(3, dim=1)
                h_r, h_z, h_n = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = (1 - z) * n + z * h
            else:
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        state = h.unsqueeze(0) if self.kind == "gru" else (h.unsqueeze(0), c.unsqueeze(0))
        return torch.stack(outputs, dim=1), state


def unroll_recurrent(module: nn.Module, skip_unsupported: bool = False) -> tuple:
    """A copy of `module` with every nn.GRU / nn.LSTM replaced by its unrolled form; returns the names replaced.

    skip_unsupported: leave the layers UnrolledRNN refuses (stacked, bidirectional) as they are, instead of raising,
    and return their names too: (module, unrolled, left)."""
    names = [n for n, m in module.named_modules() if isinstance(m, (nn.GRU, nn.LSTM))]
    if not names:
        return (module, [], []) if skip_unsupported else (module, [])
    module, unrolled, left = copy.deepcopy(module), [], []
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        try:
            setattr(parent, leaf, UnrolledRNN(getattr(parent, leaf)))
            unrolled.append(name)
        except BadInputError:
            if not skip_unsupported:
                raise
            left.append(name)
    return (module, unrolled, left) if skip_unsupported else (module, unrolled)
