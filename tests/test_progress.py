"""Progress over long work: the outer count and time left, workers' statuses reaching the parent, a failing
worker surfacing at once with its log's last lines."""

import pytest

from bert_tickets import progress, workers
from bert_tickets.errors import UserError
from bert_tickets.progress import Progress, WorkerStatus, duration_text


def test_time_left_is_the_mean_recorded_duration_times_what_is_left_over_the_busy_workers():
    bar = Progress("study x", total=10, done=2, recorded=[60.0, 120.0])
    assert bar.done == 2 and bar.seconds_left() == 8 * 90.0
    bar.finished(30.0)  # one more, in this process
    assert bar.done == 3 and bar.seconds_left() == pytest.approx(7 * 70.0)
    busy = WorkerStatus(seconds=[30.0], current="sst2 imp level 1 (10%)", step=3, steps=8)
    idle = WorkerStatus(seconds=[30.0, 30.0])
    bar.absorb([busy, idle])
    assert bar.done == 6 and bar.seconds_left() == pytest.approx(4 * 50.0)  # one busy worker
    bar.absorb([busy, idle], round_over=True)  # their work stays counted into the next round
    assert bar.done == 6 and bar.workers == []
    assert bar.summary() == "study x: 6/10 fine-tunings done, about 3 min left"
    bar.close()
    assert Progress("y", 4, 0).seconds_left() is None  # nothing recorded: no guess


def test_durations_read_as_people_say_them():
    assert [duration_text(s) for s in (20, 90, 3600 + 600)] == ["under a minute", "about 2 min", "about 1 h 10 min"]


def test_a_worker_writes_its_status_and_the_parent_reads_it(tmp_path, monkeypatch):
    status_file = tmp_path / "tickets_0.status.json"
    monkeypatch.setenv(progress.STATUS_FILE_ENV, str(status_file))
    with progress.watching("study x", 5, 0) as bar, progress.fine_tuning("rte imp level 1 (25%)", 80) as on_step:
        assert bar.bar.disable  # a worker draws no bar: its parent reports
        on_step(1, None)
        seen = WorkerStatus.read(status_file)
    assert seen is not None and seen.describe() == "rte imp level 1 (25%), step 0/80 (0 done)"
    finished = WorkerStatus.read(status_file)
    assert finished is not None and finished.done == 1 and finished.current is None
    assert progress.active() is None


def test_no_bar_before_work_starts_so_bad_input_stays_one_line(capsys):
    with pytest.raises(ValueError), progress.watching("find", 3, 0):
        raise ValueError("a bad file")  # as when the data or the model fails to load
    assert capsys.readouterr().err == ""


def test_a_pack_counts_each_of_its_fine_tunings_at_its_share_of_the_time():
    with progress.watching("find", 5, 1, recorded=[30.0]) as bar:
        with progress.fine_tuning("sst2 imp ticket seed 1, dense seed 1, ticket seed 2", 40, count=3) as on_step:
            on_step(7)  # a pack's callback takes the step alone
            assert bar.status.step == 7 and bar.done == 1
        assert bar.done == 4 and len(bar.status.seconds) == 3 and len(set(bar.status.seconds)) == 1
        assert bar.seconds_left() == pytest.approx(1 * (30 + sum(bar.status.seconds)) / 4)


def test_commands_inside_a_command_count_into_the_outer_bar():
    with progress.watching("find", 3, 0) as outer, progress.watching("baseline", 1, 0) as inner:
        assert inner is outer


def test_a_failing_worker_surfaces_at_once_with_the_last_lines_of_its_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(workers, "REPORT_EVERY", 0.1)
    call = {"function": "no_such_call", "kwargs": {}}
    with pytest.raises(UserError, match=r"local worker\(s\) \[0, 1\] of the tickets round failed"):
        workers.run_local_workers(call, 2, tmp_path, {"tickets": 2})
    err = capsys.readouterr().err
    assert "tickets worker 0 failed (exit 2); the last lines of" in err
    assert "'no_such_call' is not an API call that local workers repeat" in err  # the worker's own words
