"""A small residual gaze CNN for the conversion tests: two BasicBlocks (identity and 1x1-conv shortcuts, BN), average
pooling and a linear head, trained for a few hundred steps on synthetic eyes."""

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()  # used twice, as torchvision's BasicBlock does
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResidualGaze(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2))
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(2 * width * 5 * 8, 3)

    def forward(self, x):
        return F.normalize(self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1)), dim=-1)


WEIGHTS = Path(__file__).with_name("weights") / "residual_gaze.safetensors"


def trained(fold: bool = True) -> nn.Module:
    """ResidualGaze with the weights `train()` gives, committed in tests/snn/weights/ (training took 20 s of every
    test run; `python -m tests.snn.residual_gaze` trains and writes them again), BN folded (unless not `fold`), in
    eval mode."""
    from safetensors.torch import load_file

    from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs

    model = ResidualGaze()
    model.load_state_dict(load_file(str(WEIGHTS)))
    model.eval()
    return fold_pairs(model, find_conv_bn_pairs(model)[0]).eval() if fold else model


def train(steps: int = 400, seed: int = 0) -> nn.Module:
    """ResidualGaze trained on 3000 synthetic eyes (1x40x64, TinyGaze's preprocessing)."""
    from edgekit.data import synthetic
    from edgekit.models.card import ModelCard
    from edgekit.models.io import WEIGHTS_DIR

    card = ModelCard.load(WEIGHTS_DIR / "tinygaze.json")
    train_set = synthetic.standard_set("train", 3000, (40, 64))
    x = torch.from_numpy(card.preprocessing.apply(train_set.images, 1, (40, 64)))
    y = torch.from_numpy(train_set.gaze.astype("float32"))
    torch.manual_seed(seed)
    model = ResidualGaze()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = (1 - F.cosine_similarity(model(x[idx]), y[idx])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


if __name__ == "__main__":
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    WEIGHTS.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in train().state_dict().items()}, str(WEIGHTS))
