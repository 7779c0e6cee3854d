from __future__ import annotations

import pytest

from tests.cli_runner import Run, run_kubetune


@pytest.fixture
def kubetune() -> Run:
    return run_kubetune
