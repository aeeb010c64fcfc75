"""Shared fixtures: small real networks, their exported MindIR files (exported once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

import deploy_nets


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """name -> MindIR path (batch 2) of every test network."""
    from automc.deploy import export_mindir

    root = tmp_path_factory.mktemp("mindir")
    x = deploy_nets.batch(2)
    return {name: export_mindir(deploy_nets.build(name), x, root / name) for name in deploy_nets.NETS}

