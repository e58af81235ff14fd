"""The "Scaling out" page runs as written: its Python blocks, as one script, on four
simulated CPU devices (what the page tells readers to do without accelerators)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


def test_the_scaling_page_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 4
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "Stacked 1000" in out  # one stacked energy listing every member
    assert "Mesh('devices': 4" in out  # the draws are split over the four devices
    # the product of 1000 unit experts centred on [-1, 1]: mean ≈ 0 (sd 1/sqrt(1000))
    mean = float(re.search(r"^(\S+) ≈ ", out, flags=re.M).group(1))
    assert abs(mean) < 0.1
    # the correlated Gaussian sampled over four devices: mean ≈ [1, -1]
    row = re.search(r"^\[\s*(\S+)\s+(\S+)\s*\]$", out, flags=re.M)
    assert abs(float(row.group(1)) - 1.0) < 0.15 and abs(float(row.group(2)) + 1.0) < 0.15
