"""Built-in networks: small, standard architectures to compress.

Every factory takes ``num_classes`` and ``input_shape`` (C, H, W) and returns an ``nn.Cell``.
They use only ordinary MindSpore cells, so the generic analysis (``automc.analysis``) finds their
coupled channels the same way it does for a user's network. ResNet, MobileNetV2 and VGG declare
their elastic dimensions for NAS (``elastic_space``, see ``automc.algorithms.nas``).
"""

from __future__ import annotations

from typing import Sequence

from mindspore import nn, ops

from automc.algorithms.nas import ElasticSpace


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str | None = "relu"):
    layers = [
        nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad" if kernel > 1 else "valid",
                  padding=kernel // 2 if kernel > 1 else 0, group=groups, has_bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act == "relu":
        layers.append(nn.ReLU())
    elif act == "relu6":
        layers.append(nn.ReLU6())
    return nn.SequentialCell(layers)


class GlobalAvgPool(nn.Cell):
    """Mean over H and W, keeping (N, C)."""

    def construct(self, x):
        return ops.mean(x, (2, 3))


# --------------------------------------------------------------------------- LeNet
class LeNet(nn.Cell):
    """LeNet-style CNN for small grayscale inputs (8x8 digits, 28x28 MNIST)."""

    def __init__(self, num_classes: int = 10, input_shape: Sequence[int] = (1, 8, 8), width: int = 16):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = _conv_bn(c, width)
        self.conv2 = _conv_bn(width, 2 * width)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv3 = _conv_bn(2 * width, 4 * width)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(4 * width * (h // 4) * (w // 4), 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Dense(128, num_classes)

    def construct(self, x):
        x = self.pool1(self.conv2(self.conv1(x)))
        x = self.pool2(self.conv3(x))
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


# --------------------------------------------------------------------------- ResNet (CIFAR)
class BasicBlock(nn.Cell):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride)
        self.conv2 = _conv_bn(cout, cout, 3, 1, act=None)
        self.shortcut = _conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU()

    def construct(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class CifarResNet(nn.Cell):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, CIFAR variant; projection shortcuts)."""

    def __init__(self, depth: int, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = _conv_bn(input_shape[0], width)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
            stages.append(nn.SequentialCell(blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = GlobalAvgPool()
        self.fc = nn.Dense(cin, num_classes)

    def construct(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))

    def elastic_space(self):
        """Per stage: depth (first block kept), width (each block's inner channels and the stage's
        residual channels; stage1's residual group includes the stem)."""
        stages, widths = {}, {}
        for i in (1, 2, 3):
            n = len(getattr(self, f"layer{i}"))
            blocks = tuple(f"layer{i}.{j}" for j in range(n))
            stages[f"stage{i}"] = blocks
            widths[f"stage{i}"] = tuple(f"{b}.conv1.0" for b in blocks) + (f"layer{i}.0.conv2.0",)
        return ElasticSpace(stages=stages, widths=widths)


# --------------------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Cell):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int = 3):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1, act="relu6")]
        layers += [_conv_bn(hidden, hidden, kernel, stride, groups=hidden, act="relu6"),
                   _conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.SequentialCell(layers)
        self.use_residual = stride == 1 and cin == cout

    def construct(self, x):
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class MobileNetV2(nn.Cell):
    """MobileNetV2 (Sandler et al. 2018) for small inputs: stride-1 stem below 64x64 pixels, unless
    ``stem_stride`` says otherwise (2 at 28x28 costs a quarter of the MACs of stages 1-2)."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width_mult: float = 1.0,
                 last_channels: int = 1280, kernel: int = 3, stem_stride: int | None = None):
        super().__init__()
        if stem_stride is None:
            stem_stride = 1 if min(input_shape[1:]) < 64 else 2
        cin = _make_divisible(32 * width_mult)
        features = [_conv_bn(input_shape[0], cin, 3, stem_stride, act="relu6")]
        self._stages: list[list[int]] = []
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            self._stages.append([])
            for i in range(n):
                self._stages[-1].append(len(features))
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, kernel))
                cin = cout
        last = _make_divisible(last_channels * max(1.0, width_mult))
        features.append(_conv_bn(cin, last, 1, act="relu6"))
        self.features = nn.SequentialCell(features)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Dense(last, num_classes)

    def construct(self, x):
        return self.classifier(self.pool(self.features(x)))

    def elastic_space(self):
        """Per stage: depth (the residual blocks after the first can go) and width (each block's
        expanded channels and the stage's output channels); per block (``block<i>``, ``i`` its index
        in ``features``): depthwise kernel; plus the stem's and the head's widths."""
        stages, min_depth, widths, kernels = {}, {}, {"stem": ("features.0.0",)}, {}
        for s, idx in enumerate(self._stages, 1):
            blocks = [self.features[i] for i in idx]
            stages[f"stage{s}"] = tuple(f"features.{i}" for i in idx)
            fixed = max([0] + [j + 1 for j, b in enumerate(blocks) if not b.use_residual])
            min_depth[f"stage{s}"] = max(1, fixed)
            expand = tuple(f"features.{i}.conv.0.0" for i, b in zip(idx, blocks) if len(b.conv) == 3)
            # a stage whose first block is residual shares its output channels with the stage before
            out = () if blocks[0].use_residual else (f"features.{idx[0]}.conv.{len(blocks[0].conv) - 1}.0",)
            if expand + out:
                widths[f"stage{s}"] = expand + out
            for i, b in zip(idx, blocks):
                kernels[f"block{i}"] = (f"features.{i}.conv.{len(b.conv) - 2}.0",)
        widths["head"] = (f"features.{len(self.features) - 1}.0",)
        return ElasticSpace(stages=stages, min_depth=min_depth, widths=widths, kernels=kernels)


# --------------------------------------------------------------------------- VGG
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Cell):
    """VGG with batch-norm (Simonyan & Zisserman 2015), CIFAR-style single hidden classifier."""

    def __init__(self, config: str = "vgg11", num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
                 width_mult: float = 1.0):
        super().__init__()
        layers, cin, size = [], input_shape[0], input_shape[1]
        self._stages: list[list[int]] = [[]]
        for v in VGG_CONFIGS[config]:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
                    self._stages.append([])
                continue
            cout = max(8, int(v * width_mult))
            self._stages[-1].append(len(layers))
            layers.append(_conv_bn(cin, cout))
            cin = cout
        self._stages = [s for s in self._stages if s]
        self.features = nn.SequentialCell(layers)
        self.pool = GlobalAvgPool()
        self.fc1 = nn.Dense(cin, cin)
        self.relu = nn.ReLU()
        self.fc2 = nn.Dense(cin, num_classes)

    def construct(self, x):
        return self.fc2(self.relu(self.fc1(self.pool(self.features(x)))))

    def elastic_space(self):
        """Per stage (the convs between two poolings): width, and depth over the trailing convs
        that keep their channel count (a stage keeps at least its first conv)."""
        stages, min_depth, widths = {}, {}, {}
        for s, idx in enumerate(self._stages, 1):
            convs = [self.features[i][0] for i in idx]
            stages[f"stage{s}"] = tuple(f"features.{i}" for i in idx)
            fixed = max([0] + [j + 1 for j, c in enumerate(convs) if c.in_channels != c.out_channels])
            min_depth[f"stage{s}"] = max(1, fixed)
            widths[f"stage{s}"] = tuple(f"features.{i}.0" for i in idx)
        return ElasticSpace(stages=stages, min_depth=min_depth, widths=widths)


def lenet(num_classes: int = 10, input_shape: Sequence[int] = (1, 8, 8), width: int = 16) -> nn.Cell:
    return LeNet(num_classes, input_shape, width)


def resnet20(num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width: int = 16) -> nn.Cell:
    return CifarResNet(20, num_classes, input_shape, width)


def resnet56(num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width: int = 16) -> nn.Cell:
    return CifarResNet(56, num_classes, input_shape, width)


def mobilenetv2(num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width_mult: float = 1.0,
                last_channels: int = 1280, kernel: int = 3, stem_stride: int | None = None) -> nn.Cell:
    """``kernel``: depthwise kernel size (build with the largest one a NAS search may shrink to);
    ``stem_stride``: the first convolution's stride (default: 1 below 64x64 pixels, else 2)."""
    return MobileNetV2(num_classes, input_shape, width_mult, last_channels, kernel, stem_stride)


def vgg11(num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width_mult: float = 1.0) -> nn.Cell:
    return VGG("vgg11", num_classes, input_shape, width_mult)


def vgg16(num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), width_mult: float = 1.0) -> nn.Cell:
    return VGG("vgg16", num_classes, input_shape, width_mult)
