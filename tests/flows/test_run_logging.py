"""stageflow's logger reaches the run log inside a run, and stays quiet about the API outside one."""

from __future__ import annotations

import logging
import warnings

from prefect import flow

from stageflow.runconfig import attach_run_logging


def test_stageflow_lines_outside_a_run_do_not_warn_about_the_api() -> None:
    @flow
    def logs_inside() -> None:
        attach_run_logging()
        logging.getLogger("stageflow").info("inside the run")

    logs_inside()
    # The API handler attached inside the run is still on the logger now; before the filter, every
    # later line warned "attempted to send logs to the API without a flow run id".
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logging.getLogger("stageflow").warning("outside any run")
    assert [str(w.message) for w in caught if "flow run id" in str(w.message)] == []
