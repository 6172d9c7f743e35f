"""Suite-wide settings.

Hypothesis runs derandomized by default: the examples are derived from each test, so
``make test`` (which CI runs) tries the same inputs every time and a failure reproduces
anywhere. To explore new inputs, run with ``HYPOTHESIS_PROFILE=explore`` (random examples,
as many as each test asks for); the atheris harnesses in ``tests/fuzz`` explore further.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
