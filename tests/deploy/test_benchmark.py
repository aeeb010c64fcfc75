"""MindSpore Lite's ``benchmark`` output read back: the summary line and the ``--timeProfiling`` tables,
in the spellings of Lite's code and of its docs; unreadable output is one line naming what is missing."""

from __future__ import annotations

import pytest

from automc.deploy import BenchmarkRun, OpTime, benchmark_command, parse_benchmark_output
from automc.errors import DeployError

#: as Lite's BenchmarkUnifiedApi prints it (PrintResult's tab-separated padded columns, then the summary)
LITE_CODE = (
    "ModelPath = /data/local/tmp/lenet.ms\n"
    "Running warm up loops...\n"
    "Running benchmark loops...\n"
    "-------------------------------------------------------------------------\n"
    "opName                              \tavg(ms)     \tpercent     \tcalledTimes\topTotalTime \t\n"
    "Default/conv1-Conv2d/Conv2D-op12    \t0.051200    \t0.440000    \t10         \t0.512000    \t\n"
    "Default/fc-Dense/MatMul-op30        \t0.010000    \t0.086000    \t10         \t0.100000    \t\n"
    "-------------------------------------------------------------------------\n"
    "opType          \tavg(ms)     \tpercent     \tcalledTimes\topTotalTime \t\n"
    "Conv2DFusion    \t0.090100    \t0.770000    \t20         \t0.901000    \t\n"
    "MatMulFusion    \t0.010000    \t0.086000    \t10         \t0.100000    \t\n"
    "Model = lenet.ms, NumThreads = 2, MinRunTime = 0.104000 ms, MaxRuntime = 0.179000 ms, AvgRunTime = 0.116000 ms\n"
    "Run Benchmark lenet.ms Success.\n"
)

#: as the Lite docs show it (numThreads, MaxRunTime, the calledTimess typo, spaces only, a total line)
LITE_DOCS = """-----------------------------------------------------------------------------------------
opName                                                          avg(ms)         percent         calledTimess    opTotalTime
conv2d_1/convolution                                            2.264800        0.824012        10              22.648003
max_pooling2d_2/MaxPool_nchw2nhwc_reshape_1/Reshape_0           0.006500        0.002365        10              0.065000
-----------------------------------------------------------------------------------------
opType          avg(ms)         percent         calledTimess    opTotalTime
Conv2D          2.488500        0.905401        20              24.885004
Reshape         0.000900        0.000327        10              0.009000

total time :     2.90800 ms,    kernel cost : 2.74851 ms

Model = model.ms, numThreads = 2, MinRunTime = 72.228996 ms, MaxRunTime = 73.094002 ms, AvgRunTime = 72.556000 ms
"""


def test_the_summary_and_both_tables_of_lite_s_code():
    run = parse_benchmark_output(LITE_CODE)
    assert (run.model, run.threads, run.min_ms, run.max_ms, run.avg_ms) == ("lenet.ms", 2, 0.104, 0.179, 0.116)
    assert run.by_name() == {
        "Default/conv1-Conv2d/Conv2D-op12": OpTime("Default/conv1-Conv2d/Conv2D-op12", "", 0.0512, 10),
        "Default/fc-Dense/MatMul-op30": OpTime("Default/fc-Dense/MatMul-op30", "", 0.01, 10)}
    assert run.by_type() == {"Conv2DFusion": OpTime("", "Conv2DFusion", 0.0901, 20),
                             "MatMulFusion": OpTime("", "MatMulFusion", 0.01, 10)}
    assert len(run.ops) == 4


def test_the_docs_spelling_and_the_total_line():
    run = parse_benchmark_output(LITE_DOCS)
    assert (run.model, run.threads, run.avg_ms) == ("model.ms", 2, 72.556)
    assert set(run.by_name()) == {"conv2d_1/convolution", "max_pooling2d_2/MaxPool_nchw2nhwc_reshape_1/Reshape_0"}
    assert run.by_type()["Conv2D"] == OpTime("", "Conv2D", 2.4885, 20)


def test_without_time_profiling_there_are_no_ops():
    run = parse_benchmark_output("Model = a.ms, NumThreads = 1, MinRunTime = 1.5 ms, MaxRuntime = 2 ms, "
                                 "AvgRunTime = 1.75 ms\n")
    assert run == BenchmarkRun("a.ms", 1, 1.5, 2.0, 1.75)
    assert run.by_name() == {} and run.by_type() == {}


@pytest.mark.parametrize("text,last", [
    ("", "(no output)"),
    ("ModelPath = x.ms\nERROR: Model build failed\nRun Benchmark x.ms Failed : -1\n", "Run Benchmark x.ms Failed : -1"),
    ("Model = a.ms, NumThreads = 1, MinRunTime = 1.5 ms\n", "MinRunTime = 1.5 ms"),
])
def test_output_without_a_summary_names_what_is_missing_and_the_last_line(text, last):
    with pytest.raises(DeployError) as err:
        parse_benchmark_output(text)
    message = str(err.value)
    assert "no summary line 'Model = ..., NumThreads = ..., MinRunTime = ... ms" in message
    assert last in message and "\n" not in message


def test_the_command_line_uses_lite_s_flags():
    assert benchmark_command("/data/local/tmp/benchmark", "/data/local/tmp/m.ms", threads=4, loops=50, warmup=5,
                             time_profiling=True) == [
        "/data/local/tmp/benchmark", "--modelFile=/data/local/tmp/m.ms", "--numThreads=4", "--loopCount=50",
        "--warmUpLoopCount=5", "--timeProfiling=true"]
    assert benchmark_command("b", "m.ms", threads=1, loops=1, warmup=0)[-1] == "--timeProfiling=false"
    with pytest.raises(DeployError, match="threads >= 1, loops >= 1 and warmup >= 0"):
        benchmark_command("b", "m.ms", threads=0, loops=1, warmup=0)
