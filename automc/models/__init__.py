"""Networks to compress: the built-in zoo behind a registry, and user factories (``module:function``)."""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from automc.errors import ConfigError
from automc.registry import Registry, import_object

MODELS: Registry = Registry("model")
for _name in ("lenet", "resnet20", "resnet56", "mobilenetv2", "vgg11", "vgg16"):
    MODELS.register(_name, f"automc.models.zoo:{_name}")
MODELS.register("mindcv", "automc.models.mindcv:create")

__all__ = ["MODELS", "build_model", "data_arguments"]


def data_arguments(kwargs: dict[str, Any], num_classes: int, input_shape: Sequence[int]) -> dict[str, Any]:
    """``model.kwargs`` without ``num_classes``/``input_shape``, which the data set decides: a
    value the user gives must agree with it (then the factory gets it from the data, unchanged)."""
    data = {"num_classes": int(num_classes), "input_shape": tuple(int(s) for s in input_shape)}
    for key, expected in data.items():
        if key not in kwargs:
            continue
        given = kwargs[key]
        same = tuple(given) == expected if isinstance(given, (list, tuple)) else given == expected
        if not same:
            value = expected if key == "num_classes" else list(expected)
            has = f"{value} classes" if key == "num_classes" else f"samples of shape {value}"
            raise ConfigError(f"model.kwargs.{key} = {given!r} but the data set has {has}; remove it "
                              f"(automc passes the data set's value) or set it to {value}")
    return {k: v for k, v in kwargs.items() if k not in data}


def build_model(
    name: str | None = None,
    *,
    factory: str | None = None,
    num_classes: int,
    input_shape: Sequence[int],
    **kwargs: Any,
):
    """Build a zoo network by ``name`` or a user network from ``factory`` (``"pkg.mod:fn"``).

    ``num_classes`` and ``input_shape`` are passed to the factory when its signature takes them
    (and ``kwargs`` does not already set them); other ``kwargs`` are passed as given.
    """
    if (name is None) == (factory is None):
        raise ConfigError("model: give exactly one of 'name' (a zoo network) or 'factory' ('pkg.module:function')")
    fn = MODELS.get(name) if name is not None else import_object(factory, what="model.factory")
    if not callable(fn):
        raise ConfigError(f"model.factory {factory!r} is not callable")
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    call_kwargs = dict(kwargs)
    for key, value in (("num_classes", num_classes), ("input_shape", tuple(input_shape))):
        if key not in call_kwargs and (key in params or accepts_any):
            call_kwargs[key] = value
    unknown = [k for k in call_kwargs if k not in params] if not accepts_any else []
    if unknown:
        where = f"model {name!r}" if name else f"model.factory {factory!r}"
        raise ConfigError(f"{where} does not take {', '.join(map(repr, unknown))}; it takes: {', '.join(params)}")
    try:
        return fn(**call_kwargs)
    except ConfigError:
        raise
    except Exception as exc:  # a user factory that fails is a config problem, reported in one line
        where = f"model {name!r}" if name else f"model.factory {factory!r}"
        raise ConfigError(f"{where} failed to build: {type(exc).__name__}: {exc}") from exc
