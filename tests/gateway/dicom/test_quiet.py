"""The quiet period: a study is due once nothing arrived for the period."""

from __future__ import annotations

from lungcad_gateway.dicom.quiet import QuietPeriod


def test_a_study_is_due_only_after_a_quiet_period_since_its_last_instance() -> None:
    quiet = QuietPeriod(2.0)
    quiet.touch("a", 10.0)
    quiet.touch("a", 11.5)  # a later instance restarts the wait
    assert quiet.due(13.0) == []
    assert quiet.next_due_in(13.0) == 0.5
    assert quiet.due(13.5) == ["a"]


def test_due_studies_come_oldest_first_and_a_forgotten_one_is_gone() -> None:
    quiet = QuietPeriod(1.0)
    quiet.touch("late", 5.0)
    quiet.touch("early", 1.0)
    assert quiet.due(10.0) == ["early", "late"]
    quiet.forget("early")
    assert quiet.due(10.0) == ["late"]
    quiet.forget("late")
    assert quiet.next_due_in(10.0) is None and len(quiet) == 0


def test_an_arrival_stamped_in_the_past_never_moves_the_clock_back() -> None:
    quiet = QuietPeriod(1.0)
    quiet.touch("a", 8.0)
    quiet.touch("a", 3.0)  # a recovered instance older than one already seen
    assert quiet.due(8.5) == []
