"""The recurrent pass: GRU and LSTM layers unrolled into per-step ops compute what torch computes."""

import pytest
import torch


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_unrolled_recurrence_equals_torch(cell):
    from edgekit.models import build
    from edgekit.passes.recurrent import unroll_recurrent

    torch.manual_seed(0)
    model = build("temporalgaze", {"cell": cell}).eval()
    unrolled, names = unroll_recurrent(model)
    x = torch.randn(3, 10, 1, 40, 64)
    assert names == ["rnn"] and torch.allclose(unrolled(x), model(x), atol=1e-6)
