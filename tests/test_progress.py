"""Progress lines of long work (aenet_core.progress) and the bars ``show_progress``/``show_batch_progress``
draw while training, as aenet-python documents them."""
import logging
import warnings

import pytest

from aenet_core.progress import ProgressLog, duration
from training_setup import config, potential


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


def train_and_read_bars(capsys, structures, resume_from=None, **settings):
    """Train (energies only); returns (the TrainOut, what the bars wrote to stderr)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = potential().train(structures=structures, resume_from=resume_from,
                                config=config(force_weight=0.0, **settings))
    return out, capsys.readouterr().err


def test_show_progress_false_draws_no_bar_even_with_batch_progress(cuau, capsys):
    out, bars = train_and_read_bars(capsys, cuau, iterations=2, show_progress=False, show_batch_progress=True)
    assert len(out.errors) == 2 and bars == ""


def test_the_epoch_bar_shows_each_epochs_errors_and_batch_bars_come_on_request(cuau, capsys):
    out, bars = train_and_read_bars(capsys, cuau, iterations=3, show_progress=True)
    assert "epochs: 100%" in bars and "3/3" in bars and "RMSE_E train" in bars and "lr " in bars
    assert "train:" not in bars
    _, bars = train_and_read_bars(capsys, cuau, iterations=2, show_progress=True, show_batch_progress=True)
    # 11 training structures in batches of 4: each epoch's bar counts 3 batches (tqdm redraws it only every
    # 0.1 s and clears it at the epoch's end, so its total is what is sure to show)
    assert "train:" in bars and "0/3 [" in bars


def test_a_resumed_bar_counts_the_additional_epochs(cuau, capsys, tmp_path):
    train_and_read_bars(capsys, cuau, iterations=2, checkpoint_dir=str(tmp_path), checkpoint_interval=1)
    out, bars = train_and_read_bars(capsys, cuau, tmp_path / "checkpoint_epoch_0001.pt", iterations=3,
                                    show_progress=True)
    assert len(out.errors) == 5 and "3/3" in bars and "5/5" not in bars
