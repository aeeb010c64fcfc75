import gc
import os
import tempfile

os.environ.setdefault("GLOG_v", "3")  # MindSpore C++ logs: errors only

import numpy as np
import pytest


def pytest_configure(config):
    _own_cores()


def pytest_unconfigure(config):
    """The session's objects are left out of the collections at interpreter exit: a worker that
    ran hundreds of tests otherwise spends seconds collecting them before it can end (3.6 s of
    7.1 s from the last test to the exit of a 22-test session here), and the session waits for
    its last worker."""
    gc.freeze()


def _own_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts) keeps to its own share of
    the CPUs. MindSpore runs a training step on three threads (Python, actor, kernel) that hand
    work to each other: two LeNet fine-tunes at once cost 3.28 s of CPU each spread over two
    cores, 2.50 s each on a core of their own (``benchmarks/core_pinning.py``). Ray, MindSpore and
    automc still count every CPU of the machine (they read ``cpu_count``, not the affinity)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0))
    if not worker.startswith("gw") or count < 2 or len(cpus) < count:
        return
    mine = cpus[int(worker[2:]) % count::count]
    for thread in os.listdir("/proc/self/task"):  # the threads running already, not only this one
        try:
            os.sched_setaffinity(int(thread), mine)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


@pytest.fixture(autouse=True)
def _pynative():
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def own_device_registry(monkeypatch):
    """Devices a test registers (``use_device``, an experiment's ``devices:`` files, ``$AUTOMC_DEVICES``
    names looked up) stay in that test: the registry is a copy while it runs."""
    from automc.hw_cost import registry

    copy = registry.Registry("device")
    for name in registry.DEVICES.names():
        copy.register(name, registry.DEVICES.get(name))
    monkeypatch.setattr(registry, "DEVICES", copy)


@pytest.fixture(autouse=True)
def _one_ray_at_a_time(request):
    """Tests that start or join Ray hold a machine-wide lock while they run: besides the xdist
    group that keeps them on one worker, this keeps a second test session on this machine (or a
    worker that xdist handed a group to by mistake) from starting a Ray beside theirs."""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    import fcntl

    with open(os.path.join(tempfile.gettempdir(), "automc-tests-ray.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


#: files of independent end-to-end tests, spread test by test over the pytest-xdist workers; the
#: tests of every other file share module fixtures and run on one worker, file by file
SPREAD = {"test_search_e2e.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for ``--dist loadgroup`` (pyproject's addopts): the tests that start Ray run one
    at a time (``ray.init()`` joins a cluster another test started on this machine), the tests
    of one file together, except in ``SPREAD`` (there, the tests of the shared ``searched``
    search together). Order (kept by ``--no-loadscope-reorder``): the Ray group first (the longest
    that runs on one worker), then the other ``slow`` tests, then the fast ones, which fill the
    workers' tails."""
    groups: dict[str, str] = {}
    rank: dict[str, tuple[bool, bool]] = {}  # per group: (no Ray, not slow), False first
    for item in items:
        if item.get_closest_marker("ray"):
            group = "ray"
        elif item.path.name not in SPREAD:
            group = item.path.name
        elif "searched" in getattr(item, "fixturenames", ()):
            group = f"{item.path.name}::searched"
        else:
            group = item.nodeid  # a group of its own
        if group != item.nodeid:
            item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group
        key = (not item.get_closest_marker("ray"), not item.get_closest_marker("slow"))
        rank[group] = min(rank.get(group, key), key)
    # a stable sort: a group's tests keep their collection order and stay together (a file's tests
    # are collected together), so module fixtures are built once, with or without xdist
    items.sort(key=lambda item: rank[groups[item.nodeid]])
