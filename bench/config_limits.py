"""How fast ``stunmeshd --check`` refuses hostile configuration files (target: < 1 s each).

Each case is the whole command an admin runs (interpreter start-up included), repeated
``--runs`` times; the hostile inputs are those of tests/unit/test_config_limits.py (billion
laughs, 10,000-deep nesting, huge integers, a FIFO, a maximal file, ...) plus a real
1,000-peer file that must load. The loader alone is also timed in process
(``worst_load_ms``): the command's time is mostly the interpreter starting. Peak memory is
the largest max-RSS of any run.
Last line: ``worst_s=… worst_case=… median_s=… worst_load_ms=… worst_load_case=…
max_rss_mib=… cases=…``.
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stunmeshd.config import load_config  # noqa: E402
from stunmeshd.errors import ConfigError  # noqa: E402
from tests.unit.test_config_limits import GOOD, HOSTILE  # noqa: E402


def cases(directory: Path) -> dict[str, tuple[Path, int]]:
    """name -> (file, the exit status it must give)."""
    found: dict[str, tuple[Path, int]] = {}
    for name, text, _words in HOSTILE:
        path = directory / f"{name}.yaml"
        path.write_text(text)
        found[name] = (path, 2)
    fifo = directory / "fifo.yaml"
    os.mkfifo(fifo)
    found["fifo"] = (fifo, 2)
    big = directory / "oversized.yaml"
    big.write_text(GOOD + "#" * (1 << 20))
    found["oversized"] = (big, 2)
    keys = [base64.b64encode(i.to_bytes(32, "big")).decode() for i in range(1, 1001)]
    peers = "".join(
        f'      p{i}: {{public_key: "{k}", plugin: prog}}\n' for i, k in enumerate(keys)
    )
    real = directory / "thousand-peers.yaml"
    real.write_text(GOOD + peers)
    found["thousand-peers"] = (real, 0)
    return found


def run(path: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "stunmeshd", "--check", "-c", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return time.perf_counter() - started, result.returncode


def load_seconds(path: Path) -> float:
    """The loader alone, in this process (no interpreter start-up)."""
    started = time.perf_counter()
    try:
        load_config(path)
    except ConfigError:
        pass
    return time.perf_counter() - started


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="stunmeshd-bench-") as tmp:
        medians: dict[str, float] = {}
        loads: dict[str, float] = {}
        for name, (path, expected) in cases(Path(tmp)).items():
            times = []
            for _ in range(runs):
                seconds, status = run(path)
                if status != expected:
                    raise SystemExit(f"{name}: exit {status}, expected {expected}")
                times.append(seconds)
            medians[name] = statistics.median(times)
            loads[name] = statistics.median(load_seconds(path) for _ in range(runs))
            print(
                f"{name:34} command median {medians[name]:.3f} s (max {max(times):.3f} s), "
                f"loader {loads[name] * 1000:.1f} ms"
            )
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        worst = max(medians, key=medians.__getitem__)
        worst_load = max(loads, key=loads.__getitem__)
        print(
            f"worst_s={medians[worst]:.3f} worst_case={worst} "
            f"median_s={statistics.median(medians.values()):.3f} "
            f"worst_load_ms={loads[worst_load] * 1000:.1f} worst_load_case={worst_load} "
            f"max_rss_mib={rss:.0f} cases={len(medians)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
