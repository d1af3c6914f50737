"""Fixture traces of PFT508: each entry of FIXTURES builds `<name>.json.gz` in this folder.

Python frames point at this folder's bad.py / good.py, so findings resolve to the lines
users read. After changing a builder: `python -m perftune.engine.fixtures pft508`, then
`PERFTUNE_BLESS=1 pytest tests/engine/test_catalogue.py -k pft508`; review both diffs.
"""

from __future__ import annotations

from perftune.engine.fixtures import Fixture, cpu_host, cpu_train_steps

FIXTURES: dict[str, Fixture] = {
    "cpu_nchw": lambda: cpu_train_steps(cpu_host(), line=5),
    "cpu_channels_last": lambda: cpu_train_steps(cpu_host(), channels_last=True, file="good.py", line=5),
    "cpu_overhead": lambda: cpu_train_steps(cpu_host(), conv_us=500.0, python_us=40000.0, line=5),
}
