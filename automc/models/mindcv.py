"""Networks from mindcv's model zoo (``model: {name: mindcv, kwargs: {arch: resnet18}}``), no weights."""

from __future__ import annotations

from typing import Sequence

from automc.errors import ConfigError


def create(arch: str, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), **kwargs):
    try:
        from mindcv.models import create_model
    except ImportError:
        raise ConfigError("model 'mindcv' needs the mindcv package: pip install mindcv==0.3.0") from None
    return create_model(arch, pretrained=False, num_classes=num_classes, in_channels=input_shape[0], **kwargs)
