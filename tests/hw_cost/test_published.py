"""The shipped dataset of published real-device latencies: its reader, its sources, its coverage."""

import collections
import re

import pytest

from automc.errors import ConfigError
from automc.hw_cost.published import DATA, FAMILIES, read_published, profile_for


@pytest.fixture(scope="module")
def rows():
    return read_published()


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", text)]


def test_every_figure_can_be_read_back_from_its_quote(rows):
    """The latency is in the quoted text: as milliseconds, as nanoseconds (MLPerf logs), or as
    a throughput (images/s, per chip or per 4-chip card) for the stated batch."""
    unreadable = []
    for m in rows:
        ms, b = m.latency_ms, m.batch
        candidates = [n for n in _numbers(m.quote) if n > 0]
        readings = ([n for n in candidates] + [n / 1e6 for n in candidates] + [1000 * b / n for n in candidates]
                    + [4000 * b / n for n in candidates] + [n / b for n in candidates])
        if not any(abs(r - ms) <= 0.01 * ms + 0.006 for r in readings):
            unreadable.append((m.device, m.network, ms, m.quote[:80]))
    assert not unreadable, unreadable[:5]
    assert all(m.source_url.startswith("https://") or m.source_url.startswith("http://") for m in rows)


def test_the_mission_devices_are_covered(rows):
    assert len(rows) >= 60
    families = collections.Counter(m.family for m in rows)
    for family in ("ascend", "kirin-npu", "gpu", "arm-cpu"):
        assert families[family] >= 10, family
    assert set(families) <= set(FAMILIES)
    shipped = collections.Counter(profile_for(m) for m in rows if profile_for(m))
    # every shipped accelerator/CPU profile of the mission has standard networks to be checked on
    for profile in ("ascend310", "kirin990-npu", "t4", "a100", "arm-a76", "arm-a76-4t", "arm-a72"):
        networks = {m.network for m in rows if profile_for(m) == profile}
        assert len(networks) >= 2, (profile, networks)
    assert sum(shipped.values()) >= 60
    # INT8 and FP16 next to FP32 on the same device and runtime: speed-ups can be checked
    pairs = {(m.device, m.network, m.runtime, m.threads, m.host) for m in rows if m.precision == "fp32"}
    assert sum((m.device, m.network, m.runtime, m.threads, m.host) in pairs for m in rows if m.precision == "int8") >= 10


def test_a_row_without_a_source_is_refused_with_its_line(tmp_path):
    header = DATA.read_text().splitlines()[0]
    good = "arm-cpu,arm-a76,resnet50,224,1,fp32,ncnn,,1,Pixel,100.5,https://example.org/t,resnet50 100.5 ms,"
    path = tmp_path / "mine.csv"
    path.write_text("\n".join([header, good, good.replace("https://example.org/t", "")]) + "\n")
    with pytest.raises(ConfigError, match=r"mine.csv:3: column 'source_url' is empty"):
        read_published(path)
    path.write_text("\n".join([header, good.replace(",fp32,", ",fp64,")]) + "\n")
    with pytest.raises(ConfigError, match=r"mine.csv:2: precision 'fp64'"):
        read_published(path)
    path.write_text("\n".join([header, good]) + "\n")
    (m,) = read_published(path)
    assert (m.latency_ms, m.batch, profile_for(m)) == (100.5, 1, "arm-a76")
