"""Small real MindSpore networks for the deployment tests (no mocks)."""

from __future__ import annotations

import numpy as np
from mindspore import nn, ops


def _randomize_bn(net, seed: int) -> None:
    """Give every BatchNorm non-trivial statistics, so folding and conversions are really tested."""
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            c = cell.num_features
            cell.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
            cell.beta.set_data(Tensor(rng.normal(0, 0.1, c).astype(np.float32)))
            cell.moving_mean.set_data(Tensor(rng.normal(0, 0.1, c).astype(np.float32)))
            cell.moving_variance.set_data(Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1, act: type = nn.ReLU) -> nn.SequentialCell:
    return nn.SequentialCell(
        [
            nn.Conv2d(cin, cout, k, stride=stride, pad_mode="pad", padding=k // 2, group=group, has_bias=False),
            nn.BatchNorm2d(cout),
            act(),
        ]
    )


class SmallCNN(nn.Cell):
    """conv-bn-relu, max-pool, conv(bias)-bn-relu, avg-pool, flatten, dense."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, has_bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool2 = nn.AvgPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(16 * 4 * 4, num_classes)

    def construct(self, x):
        x = self.pool1(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(x))


class BasicBlock(nn.Cell):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, has_bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, pad_mode="pad", padding=1, has_bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.SequentialCell([nn.Conv2d(cin, cout, 1, stride=stride, has_bias=False), nn.BatchNorm2d(cout)])

    def construct(self, x):
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Cell):
    """Stem, two basic blocks (one with a projection shortcut), global mean pooling, dense."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.fc = nn.Dense(16, num_classes)

    def construct(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Cell):
    """MobileNetV2 block: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project, residual add."""

    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        hidden = c * expand
        self.block = nn.SequentialCell(
            [
                conv_bn(c, hidden, 1, act=nn.ReLU6),
                conv_bn(hidden, hidden, 3, group=hidden, act=nn.ReLU6),
                nn.Conv2d(hidden, c, 1, has_bias=False),
                nn.BatchNorm2d(c),
            ]
        )

    def construct(self, x):
        return x + self.block(x)


class TinyMobileNetV2(nn.Cell):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, stride=2, act=nn.ReLU6)
        self.block = InvertedResidual(16, 4)
        self.head = conv_bn(16, 32, 1, act=nn.ReLU6)
        self.classifier = nn.Dense(32, num_classes)

    def construct(self, x):
        x = self.head(self.block(self.stem(x)))
        return self.classifier(x.mean((2, 3)))


class GhostModule(nn.Cell):
    """GhostNet's module: a 1x1 convolution, a depthwise one on its output, both concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.out = cout
        self.primary = conv_bn(cin, (cout + 1) // 2, 1)
        self.cheap = conv_bn((cout + 1) // 2, (cout + 1) // 2, 3, group=(cout + 1) // 2)

    def construct(self, x):
        x = self.primary(x)
        return ops.concat((x, self.cheap(x)), axis=1)[:, : self.out]


class GhostBlock(nn.Cell):
    """GhostNet's bottleneck as mindcv writes it: ghost, squeeze-excite gated by a hard sigmoid
    (``relu6(x + 3.0) / 6.0``: tensor constants in the graph), ghost, and ``x += residual``
    (an in-place add)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.ghost1 = GhostModule(c, 2 * c)
        self.reduce = nn.Conv2d(2 * c, c // 2, 1, has_bias=True)
        self.expand = nn.Conv2d(c // 2, 2 * c, 1, has_bias=True)
        self.relu, self.relu6 = nn.ReLU(), nn.ReLU6()
        self.ghost2 = GhostModule(2 * c, c)

    def construct(self, x):
        residual = x
        x = self.ghost1(x)
        gate = self.expand(self.relu(self.reduce(x.mean((2, 3), keep_dims=True))))
        x = self.ghost2(x * (self.relu6(gate + 3.0) / 6.0))
        x += residual
        return x


class TinyGhostNet(nn.Cell):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3, stride=2)
        self.block = GhostBlock(8)
        self.classifier = nn.Dense(8, num_classes)

    def construct(self, x):
        return self.classifier(self.block(self.stem(x)).mean((2, 3)))


NETS = {"small_cnn": SmallCNN, "tiny_resnet": TinyResNet, "tiny_mobilenetv2": TinyMobileNetV2,
        "tiny_ghostnet": TinyGhostNet}


def build(name: str, seed: int = 0) -> nn.Cell:
    import mindspore as ms

    ms.set_seed(seed)
    net = NETS[name]()
    _randomize_bn(net, seed)
    net.set_train(False)
    return net


def batch(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 16, 16)).astype(np.float32)
