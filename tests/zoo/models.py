"""Gaze architectures from published papers, written for edgekit's tests in plain torch at small widths.

Each class follows the structure its paper describes (the facts: layer kinds, order, where head pose
enters, how the output is formed), at widths small enough to train on edgekit's synthetic eyes in under
a minute on one CPU thread. No code is copied from any implementation. Input is a 1x36x60 grayscale eye
(the MPIIGaze normalised eye size), float32 NCHW, already normalised by edgekit's preprocessing; ITracker
also takes the other eye, a face crop and a face grid (edgekit.data.views renders them).

Constructor arguments are JSON-serialisable keywords with defaults, so edgekit can rebuild any of them
from `arch="tests.zoo.models:ClassName"` plus the card's `arch_config`.

Output conventions (edgekit.data.gaze): pitch/yaw in radians, or a unit 3-D vector in the normalised
camera frame (x right, y down, z forward).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

EYE_SIZE = [36, 60]


def _conv_out(n: int, k: int, s: int = 1, p: int = 0) -> int:
    return (n + 2 * p - k) // s + 1


class MPIIGazeLeNet(nn.Module):
    """LeNet-style gaze regressor with head pose, after Zhang, Sugano, Fritz and Bulling, "Appearance-based gaze
    estimation in the wild", CVPR 2015 (the MPIIGaze paper).

    Kept: 5x5 convolution -> 2x2 max-pool -> 5x5 convolution -> 2x2 max-pool -> fully connected + ReLU; the 2-D head
    pose (pitch, yaw in radians) is concatenated to the FC output before the last linear layer, which regresses
    (pitch, yaw) in radians; histogram-equalised grayscale 36x60 eye input (set in the card's preprocessing).
    Simplified: widths 8/12/64 instead of 20/50/500.
    Inputs: image (B, 1, 36, 60), head_pose (B, 2). Output (B, 2) pitch/yaw radians.
    """

    def __init__(self, conv1: int = 8, conv2: int = 12, fc: int = 64, input_size: list = EYE_SIZE):
        super().__init__()
        h, w = input_size
        self.conv1 = nn.Conv2d(1, conv1, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(conv1, conv2, 5)
        self.pool2 = nn.MaxPool2d(2)
        fh, fw = (_conv_out(h, 5) // 2 - 4) // 2, (_conv_out(w, 5) // 2 - 4) // 2
        self.fc1 = nn.Linear(conv2 * fh * fw, fc)
        self.fc2 = nn.Linear(fc + 2, 2)

    def forward(self, image: torch.Tensor, head_pose: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(image))))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(torch.cat([x, head_pose], dim=1))


class PreActBlock(nn.Module):
    """Pre-activation residual unit: BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the identity (or a strided
    1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNetGaze(nn.Module):
    """Pre-activation ResNet gaze regressor with head pose, after the ResNet baselines of Zhang, Sugano, Fritz and
    Bulling, "MPIIGaze: Real-world dataset and deep appearance-based gaze estimation", IEEE TPAMI 2019 (GazeNet) and
    Zhang, Park, Beeler, Bradley, Tang and Hilliges, "ETH-XGaze: A large scale dataset for gaze estimation under
    extreme head pose and gaze variation", ECCV 2020 (ResNet-50 regressing pitch/yaw); residual units in the
    pre-activation form of He, Zhang, Ren and Sun, "Identity mappings in deep residual networks", ECCV 2016.

    Kept: stem conv, two stages of pre-activation residual blocks (the second opening with a stride-2 downsample and a
    1x1 projection shortcut), final BN-ReLU, global average pool, head pose concatenated before the fc, pitch/yaw out.
    Simplified: 2 stages of 2 blocks at widths 8/16 instead of ResNet-50's 4 stages of bottlenecks.
    Module paths repeat leaf names across stages (stage1.block1.conv1, stage2.block1.conv1, ...) on purpose.
    Inputs: image (B, 1, 36, 60), head_pose (B, 2). Output (B, 2) pitch/yaw radians.
    """

    def __init__(self, width: int = 8, blocks: int = 2, input_size: list = EYE_SIZE):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(1, w, 3, 2, 1, bias=False)
        self.stage1 = nn.Sequential()
        self.stage2 = nn.Sequential()
        for i in range(blocks):
            self.stage1.add_module(f"block{i + 1}", PreActBlock(w, w))
            self.stage2.add_module(f"block{i + 1}", PreActBlock(w if i == 0 else 2 * w, 2 * w, 2 if i == 0 else 1))
        self.bn = nn.BatchNorm2d(2 * w)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w + 2, 2)

    def forward(self, image: torch.Tensor, head_pose: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(image)))
        x = self.pool(F.relu(self.bn(x))).flatten(1)
        return self.fc(torch.cat([x, head_pose], dim=1))


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class L2CSBins(nn.Module):
    """Binned gaze classification + regression, after Abdelrahman, Hempel, Khalifa and Al-Hamadi, "L2CS-Net:
    Fine-grained gaze estimation in unconstrained environments", arXiv 2203.03339, 2022 (ICFSP 2023).

    Kept: a shared CNN backbone and two separate fully connected heads, one per angle, each classifying its angle
    into bins (the MPIIGaze setting: 28 bins of 3 degrees over +-42 degrees); the continuous angle is the softmax
    expectation over the bin centres. Training (scripts/train_zoo.py) uses the paper's per-angle loss: cross-entropy
    on the bin plus a weighted mean-squared error on the expectation.
    Simplified: a 4-layer conv+BN+ReLU backbone at width 8-32 instead of ResNet-50; bin edges start at -42 degrees.
    Input (B, 1, 36, 60). Output (B, 2) pitch/yaw radians; `logits(x)` gives the two (B, bins) score tensors.
    """

    def __init__(self, width: int = 8, bins: int = 28, bin_deg: float = 3.0, input_size: list = EYE_SIZE):
        super().__init__()
        w = width
        self.backbone = nn.Sequential(_conv_bn_relu(1, w, 2), _conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 4 * w, 2),
                                      _conv_bn_relu(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc_pitch = nn.Linear(4 * w, bins)
        self.fc_yaw = nn.Linear(4 * w, bins)
        lo = -bins * bin_deg / 2
        centres = torch.tensor([math.radians(lo + (i + 0.5) * bin_deg) for i in range(bins)])
        self.register_buffer("centres", centres, persistent=False)
        self.bin_deg = bin_deg

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x)
        return self.fc_pitch(f), self.fc_yaw(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lp, ly = self.logits(x)
        pitch = (F.softmax(lp, dim=1) * self.centres).sum(dim=1, keepdim=True)
        yaw = (F.softmax(ly, dim=1) * self.centres).sum(dim=1, keepdim=True)
        return torch.cat([pitch, yaw], dim=1)


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excitation: global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid -> scale."""

    def __init__(self, ch: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(ch, reduced, 1)
        self.expand = nn.Conv2d(reduced, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(self.pool(x)))))
        return x * s


class InvertedResidual(nn.Module):
    """1x1 expand -> BN -> hardswish -> 3x3 depthwise -> BN -> hardswish -> [SE] -> 1x1 linear projection -> BN,
    with the identity added when the stride is 1 and the widths match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, se: bool):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                       nn.Hardswish())
        self.se = SqueezeExcite(mid, max(4, mid // 4)) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.residual else out


class MobileGaze(nn.Module):
    """MobileNet-style gaze network, after Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted residuals
    and linear bottlenecks", CVPR 2018, and Howard et al., "Searching for MobileNetV3", ICCV 2019.

    Kept: strided 3x3 stem with hardswish; inverted residual blocks (1x1 expansion, 3x3 depthwise, linear 1x1
    projection, identity shortcut when shapes match); MobileNetV3's hardswish activations and squeeze-and-excitation
    with a hard-sigmoid gate; a final 1x1 conv + hardswish, global average pool and a linear layer.
    Simplified: 5 blocks at widths 12-32, expansion 3, no architecture search; the linear layer regresses a 3-D
    gaze vector, L2-normalised in the graph.
    Input (B, 1, 36, 60). Output (B, 3) unit gaze vector.
    """

    def __init__(self, width: int = 12, expand: int = 3, last: int = 64, input_size: list = EYE_SIZE):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.Hardswish())
        cfg = [(w, w, 1, False), (w, 2 * w, 2, True), (2 * w, 2 * w, 1, True), (2 * w, 32, 2, True), (32, 32, 1, True)]
        self.blocks = nn.Sequential(*[InvertedResidual(a, b, s, expand, se) for a, b, s, se in cfg])
        self.head = nn.Sequential(nn.Conv2d(32, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(last, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.head(self.blocks(self.stem(x)))), dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention written out: q, k, v projections, softmax(q k^T / sqrt(d)) v, output projection."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.heads, self.head_dim, self.tokens = heads, dim // heads, tokens
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.scale = self.head_dim ** -0.5

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, self.tokens, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        att = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(-1, self.tokens, self.heads * self.head_dim)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: x + MHSA(LN(x)), then x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp: int, tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class GazeTransformer(nn.Module):
    """Small vision transformer for gaze, after Dosovitskiy et al., "An image is worth 16x16 words: Transformers for
    image recognition at scale", ICLR 2021 (ViT), and Cheng and Lu, "Gaze estimation using transformer", ICPR 2022
    (GazeTR-Pure).

    Kept: non-overlapping patch embedding by a strided convolution, learned position embeddings, pre-norm encoder
    blocks (LayerNorm, multi-head self-attention, LayerNorm, GELU MLP, residuals), a final LayerNorm and a linear
    gaze head. Attention is written with explicit Linear q/k/v, matmul and softmax (friendlier to ONNX and Core ML
    converters than nn.MultiheadAttention).
    Simplified: 6x6 patches (60 tokens on 36x60), width 32, 2 blocks of 4 heads; mean pooling over tokens instead of
    a class token; the head regresses a 3-D vector, L2-normalised in the graph.
    Input (B, 1, 36, 60). Output (B, 3) unit gaze vector.
    """

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4, mlp: int = 64, patch: int = 6,
                 input_size: list = EYE_SIZE):
        super().__init__()
        h, w = input_size
        tokens = (h // patch) * (w // patch)
        self.dim, self.tokens = dim, tokens
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp, tokens) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, dim)
        t = self.norm(self.blocks(t)).mean(dim=1)
        return F.normalize(self.fc(t), dim=-1)


class Gaze360Temporal(nn.Module):
    """Temporal gaze model after Kellnhofer, Recasens, Stent, Matusik and Torralba, "Gaze360: Physically unconstrained
    gaze estimation in the wild", ICCV 2019.

    Kept: the same CNN applied to each of 7 consecutive frames, a bidirectional LSTM (2 layers, as in the paper) over
    the 7 per-frame features, and a linear layer on the middle frame's LSTM output giving that frame's gaze.
    Simplified: a 4-layer conv+BN+ReLU CNN (width 8-32, 32-d features) instead of ResNet-18 and 256 hidden units;
    eye crops instead of head crops; output (pitch, yaw) in radians without the paper's third (uncertainty) output
    and pinball loss.
    Input (B, 7, 1, 36, 60) frames t-3..t+3. Output (B, 2) pitch/yaw radians of frame t (the middle one).
    """

    def __init__(self, width: int = 8, features: int = 32, hidden: int = 32, layers: int = 2, window: int = 7,
                 input_size: list = EYE_SIZE):
        super().__init__()
        w = width
        self.window, self.features = window, features
        self.cnn = nn.Sequential(_conv_bn_relu(1, w, 2), _conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 4 * w, 2),
                                 _conv_bn_relu(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4 * w, features), nn.ReLU())
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 2)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, features)."""
        return self.cnn(frames)

    def temporal(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, window, features) -> (B, 2) gaze of the middle frame."""
        seq, _ = self.lstm(feats)
        return self.fc(seq[:, self.window // 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.frame_features(x.flatten(0, 1))
        return self.temporal(feats.reshape(-1, self.window, self.features))


class SpatialTransformerGaze(nn.Module):
    """Gaze CNN behind a spatial transformer, after Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial
    transformer networks", NeurIPS 2015.

    Kept: a localisation network regressing the 6 parameters of a 2-D affine transform, its last layer initialised
    to the identity transform (zero weights, identity bias); a sampling grid from `affine_grid` and bilinear
    resampling with `grid_sample`; the task network then sees the resampled eye.
    Simplified: a 2-conv localisation net and a 4-layer conv+BN+ReLU task net; the head regresses a 3-D vector,
    L2-normalised in the graph.
    Input (B, 1, 36, 60). Output (B, 3) unit gaze vector.
    """

    def __init__(self, width: int = 8, loc: int = 8, input_size: list = EYE_SIZE):
        super().__init__()
        h, w = input_size
        self.size = [1, h, w]
        self.localise = nn.Sequential(nn.Conv2d(1, loc, 5, 2, 2), nn.MaxPool2d(2), nn.ReLU(),
                                      nn.Conv2d(loc, 2 * loc, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(2 * loc, 32), nn.ReLU())
        self.theta = nn.Linear(32, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        c = width
        self.cnn = nn.Sequential(_conv_bn_relu(1, c, 2), _conv_bn_relu(c, 2 * c, 2), _conv_bn_relu(2 * c, 4 * c, 2),
                                 _conv_bn_relu(4 * c, 4 * c, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.localise(x)).view(-1, 2, 3)
        grid = F.affine_grid(theta, [x.shape[0]] + self.size, align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return F.normalize(self.fc(self.cnn(warped)), dim=-1)


class ITracker(nn.Module):
    """Multi-input gaze network after Krafka, Khosla, Kellnhofer, Kannan, Bhandarkar, Matusik and Torralba, "Eye
    tracking for everyone", CVPR 2016 (iTracker).

    Kept: four inputs, the right and left eye crops, the face crop and the 25x25 face grid (where the face lies in
    the camera frame); one eye CNN whose weights both eyes share, its two feature vectors concatenated into a fully
    connected layer; a separate face CNN followed by two fully connected layers; two fully connected layers on the
    flattened face grid; all three concatenated into two final fully connected layers.
    Simplified: 3-layer conv+ReLU+max-pool CNNs at widths 8-16 on 36x60 eyes and a 32x32 face instead of the
    AlexNet-like stacks on 224x224 crops; the head regresses a 3-D gaze vector (L2-normalised in the graph) instead
    of a 2-D point on the screen.
    Inputs: right_eye (B, 1, 36, 60), left_eye (B, 1, 36, 60), face (B, 1, 32, 32), face_grid (B, 625).
    Output (B, 3) unit gaze vector.
    """

    def __init__(self, width: int = 8, fc: int = 32, face_size: list = [32, 32], grid: int = 25,
                 input_size: list = EYE_SIZE):
        super().__init__()
        w = width

        def cnn(pooled: tuple[int, int]) -> nn.Sequential:
            # the pooled size divides the 9x15 eye / 8x8 face maps, so every exporter takes it as a fixed-kernel pool
            return nn.Sequential(nn.Conv2d(1, w, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(w, 2 * w, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(pooled), nn.Flatten())

        self.eye = cnn((3, 5))  # shared by both eyes, as in the paper
        self.fc_eyes = nn.Sequential(nn.Linear(2 * 2 * w * 15, fc), nn.ReLU())
        self.face = cnn((2, 2))
        self.fc_face = nn.Sequential(nn.Linear(2 * w * 4, fc), nn.ReLU(), nn.Linear(fc, fc // 2), nn.ReLU())
        self.fc_grid = nn.Sequential(nn.Linear(grid * grid, fc), nn.ReLU(), nn.Linear(fc, fc // 2), nn.ReLU())
        self.fc1 = nn.Linear(fc + fc // 2 + fc // 2, fc)
        self.fc2 = nn.Linear(fc, 3)

    def forward(self, right_eye: torch.Tensor, left_eye: torch.Tensor, face: torch.Tensor,
                face_grid: torch.Tensor) -> torch.Tensor:
        eyes = self.fc_eyes(torch.cat([self.eye(right_eye), self.eye(left_eye)], dim=1))
        x = torch.cat([eyes, self.fc_face(self.face(face)), self.fc_grid(face_grid)], dim=1)
        return F.normalize(self.fc2(F.relu(self.fc1(x))), dim=-1)


ZOO = {
    "mpiigaze_lenet": MPIIGazeLeNet,
    "preact_resnet_gaze": PreActResNetGaze,
    "l2cs_bins": L2CSBins,
    "mobilegaze": MobileGaze,
    "gaze_transformer": GazeTransformer,
    "gaze360_temporal": Gaze360Temporal,
    "stn_gaze": SpatialTransformerGaze,
    "itracker": ITracker,
}
