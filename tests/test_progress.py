"""Progress lines of long work (aenet_core.progress)."""
import logging

import pytest

from aenet_core.progress import ProgressLog, duration


@pytest.mark.parametrize("seconds, text", [(4.4, "4 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")])
def test_durations_read_as_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_lines_come_at_the_start_every_tenth_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    progress = ProgressLog("epoch", 100, lines=10)
    for _ in range(100):
        progress.update(detail=" | RMSE_E 0.1")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 11 and lines[0].startswith("epoch: 1/100 (1 %) | RMSE_E 0.1, ")
    assert lines[4].startswith("epoch: 40/100 (40 %)") and "left" in lines[4]
    assert lines[-1].startswith("epoch: 100/100 (100 %)") and "left" not in lines[-1]


def test_a_resumed_count_starts_where_it_stopped(caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    progress = ProgressLog("epoch", 60, start=50)
    progress.update()
    assert caplog.records[0].getMessage().startswith("epoch: 51/60 (85 %)")


def test_without_a_total_the_lines_say_what_is_done(caplog):
    caplog.set_level(logging.INFO, logger="aenet_core")
    progress = ProgressLog("building database.h5", unit="structures", seconds=0)
    progress.update(40, " (900 atoms)")
    progress.update(10)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("building database.h5: 40 structures (900 atoms), ") and len(messages) == 2
