"""Hypothesis settings for every fuzz test: one budget, scaled by ``FUZZ_EXAMPLES``.

The default keeps the fuzz suite well under a minute in CI; ``make fuzz`` raises it for a long
run. Example generation is derandomized in CI (``CI`` set), so a red CI run is reproducible.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))

settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # a shared CI machine is slow at times; we judge outcomes, not speed
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("fuzz")
