"""Follow one `automc search` (LeNet on digits, 2 trials, MindIR export, uniform reference) and
print how control moves between the search's stages.

    python docs/follow_a_search.py /tmp/follow

With ``sys.setprofile`` it counts every call into a function of ``automc/search/runner.py`` made
from another module (the loop should be entered once, from ``pipeline.run_search``), and prints
the order in which the stage modules are entered (consecutive calls within one merged).
"""

from __future__ import annotations

import collections
import importlib
import sys
from pathlib import Path

import yaml

from automc.cli import app

STAGES = ("search/pipeline.py", "search/baseline.py", "search/runner.py", "search/finish/__init__.py",
          "report/_writer.py")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "follow", "output_dir": str(out / "run"), "seed": 0, "model": {"name": "lenet"},
           "data": {"name": "digits"}, "train": {"epochs": 1, "lr": 0.05}, "finetune": {"epochs": 0.2, "lr": 0.02},
           "compress": {"pruning": {"max_ratio": 0.6, "step": 0.05}}, "objectives": ["accuracy", "macs"],
           "search": {"strategy": "tpe", "n_trials": 2, "heartbeat_s": 1.0},
           "export": {"formats": ["mindir"], "compare_uniform": True}}
    path = out / "follow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = importlib.import_module("automc.search.runner").__file__
    into_runner: collections.Counter = collections.Counter()
    stages: list[str] = []

    def where(filename: str) -> str:
        return filename.split("/automc/", 1)[1] if "/automc/" in filename else filename

    def profile(frame, event, arg):
        if event != "call":
            return
        name = where(frame.f_code.co_filename)
        if frame.f_code.co_filename == runner and frame.f_back is not None and frame.f_back.f_code.co_filename != runner:
            into_runner[(where(frame.f_back.f_code.co_filename), frame.f_code.co_name)] += 1
        if name in STAGES and (not stages or stages[-1] != name):
            stages.append(name)

    sys.setprofile(profile)
    try:
        app(["search", str(path)], standalone_mode=False)
    finally:
        sys.setprofile(None)
    print("\ncalls into search/runner.py from another module:",
          ", ".join(f"{caller} -> {fn} x{n}" for (caller, fn), n in into_runner.items()))
    print("stages entered, in order:", " -> ".join(stages))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/follow"))
