import os

os.environ.setdefault("GLOG_v", "3")  # MindSpore C++ logs: errors only

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _pynative():
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    np.random.seed(0)
    yield
