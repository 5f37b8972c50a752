"""Flow tests run real Prefect flows against one session-wide test harness (~10 s to start)."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
