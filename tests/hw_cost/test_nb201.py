import pytest

from automc.errors import ConfigError
from automc.hw_cost.nb201 import nb201_table, parse_arch

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_macs_hand_count_all_conv3x3():
    stem = 3 * 16 * 9 * 32 * 32
    cells = 3 * 5 * 6 * (16 * 16 * 9 * 32 * 32)  # every stage: C^2*9*HW is the same 2,359,296
    reduce = 2 * (16 * 32 * 9 * 16 * 16 + 32 * 32 * 9 * 16 * 16 + 16 * 32 * 16 * 16)
    fc = 64 * 10
    t = nb201_table(ALL_CONV3)
    assert t.totals()["macs"] == stem + cells + reduce + fc == 220_119_680
    # 15 cells x (6 convs + adds: node2 1, node3 2) + stem + 2x5 reduction rows + gap + fc
    assert len(t) == 15 * 9 + 1 + 10 + 2


def test_dead_branches_and_constant_networks():
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    compiled, eager = nb201_table(arch), nb201_table(arch, prune_dead=False)
    assert compiled.totals()["macs"] < eager.totals()["macs"]  # node1's conv never reaches the output
    disconnected = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert len(nb201_table(disconnected)) == 1  # constant network: folded


def test_bad_arch_string():
    with pytest.raises(ConfigError, match="conv_5x5"):
        parse_arch("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")
