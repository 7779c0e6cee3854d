"""Formatting of runs and numbers (``kubetune.cli.views``) and the watch snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubetune.cli.commands.adapters import serving_roles
from kubetune.cli.commands.watch import Snapshot
from kubetune.cli.views import (
    age,
    duration,
    finetunejob_row,
    number,
    progress_text,
    run_rows,
    sparkline,
    version,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def job(status: dict, generation: int = 1) -> dict:
    return {
        "metadata": {
            "name": "support",
            "namespace": "acme",
            "generation": generation,
            "creationTimestamp": "2026-11-28T11:00:00Z",
        },
        "status": status,
    }


RUNNING = {
    "phase": "Running",
    "observedGeneration": 1,
    "currentRun": {
        "name": "support-g1",
        "generation": 1,
        "phase": "Running",
        "startTime": "2026-11-28T11:50:00Z",
        "progress": {
            "step": 40,
            "totalSteps": 144,
            "percent": 27,
            "loss": 6.12345,
            "etaSeconds": 95,
        },
    },
}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.6, "1m00s"), (75, "1m15s"), (3723, "1h02m"), (90000, "1d1h")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_age_is_kubectl_style() -> None:
    assert age("2026-11-28T11:59:30Z", NOW) == "30s"
    assert age("2026-11-28T11:00:00Z", NOW) == "60m"
    assert age("2026-11-26T12:00:00Z", NOW) == "2d"
    assert age(None, NOW) == age("garbage", NOW) == "-"


def test_numbers_versions_and_progress() -> None:
    assert number(None) == "-"
    assert number(1234) == "1,234"
    assert number(6.12345) == "6.123"
    assert number(0.8) == "0.8"
    assert number(0.0) == "0"
    assert number(390.2) == "390.2"
    assert version("sha256:3f2a9c1d4e5b77aa") == "3f2a9c1d4e5b"
    assert version(None) == "-"
    assert progress_text({"step": 40, "totalSteps": 144, "percent": 27}) == "40/144 (27%)"
    assert progress_text({}) == "-"


def test_sparkline_shows_the_trend_and_averages_long_series() -> None:
    assert sparkline([]) == ""
    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁"
    assert sparkline([1.0, 1.0]) == "▅▅"
    falling = [100.0 - i for i in range(400)]
    line = sparkline(falling, width=40)
    assert len(line) == 40
    assert line[0] == "█" and line[-1] == "▁"
    assert sparkline([1.0, float("nan"), 2.0]) == "▁█"


def test_row_of_a_running_job() -> None:
    row = finetunejob_row(job(RUNNING), now=NOW)
    assert row == {
        "namespace": "acme",
        "name": "support",
        "phase": "Running",
        "run": "support-g1",
        "progress": "40/144 (27%)",
        "loss": "6.123",
        "evalLoss": "-",
        "adapter": "-",
        "age": "60m",
    }


def test_run_history_puts_the_current_run_first_once() -> None:
    done = {
        "name": "support-g1",
        "generation": 1,
        "phase": "Succeeded",
        "startTime": "2026-11-28T11:00:00Z",
        "completionTime": "2026-11-28T11:02:10Z",
        "metrics": {"trainLoss": 5.9, "evalLoss": 5.96},
        "adapter": {"digest": "sha256:" + "ab" * 32},
    }
    status = {"currentRun": {**RUNNING["currentRun"], "name": "support-g2"}, "runs": [done]}
    rows = run_rows(job(status))
    assert [r["run"] for r in rows] == ["support-g2", "support-g1"]
    assert rows[1]["duration"] == "2m10s"
    assert rows[1]["adapter"] == "abababababab"
    assert rows[1]["evalLoss"] == "5.96"
    # The current run already in the history is not listed twice.
    assert len(run_rows(job({"currentRun": done, "runs": [done]}))) == 1


def test_watch_waits_for_the_operator_to_see_the_latest_spec() -> None:
    succeeded = {**RUNNING, "phase": "Succeeded"}
    assert Snapshot.of(job(succeeded)).settled
    stale = Snapshot.of(job(succeeded, generation=2))
    assert not stale.settled and stale.phase == "Pending"
    failed = {
        "phase": "Failed",
        "observedGeneration": 1,
        "currentRun": {"name": "support-g1", "reason": "InvalidDataset"},
        "conditions": [{"type": "Failed", "status": "True", "message": "line 3: bad role"}],
    }
    snap = Snapshot.of(job(failed))
    assert snap.settled and snap.message == "line 3: bad role"
    line = Snapshot.of(job(RUNNING)).line([3.0, 2.0, 1.0])
    assert line == "support-g1 Running  step 40/144 (27%)  loss 6.123  ETA 1m35s  █▅▁"


def test_serving_roles_by_digest() -> None:
    adep = {
        "metadata": {"name": "support"},
        "spec": {"adapterName": "support-assistant", "target": {"deploymentName": "llama"}},
        "status": {
            "activeVersion": {"digest": "sha256:new"},
            "previousVersion": {"digest": "sha256:old"},
            "replicas": {"desired": 3, "ready": 2},
        },
    }
    assert serving_roles([adep]) == {
        "sha256:new": ["active on llama (2/3 ready) as support-assistant"],
        "sha256:old": ["previous on llama as support-assistant"],
    }


def test_the_terminal_panel_shows_bar_step_eta_losses_and_sparkline() -> None:
    from rich.console import Console  # noqa: PLC0415

    from kubetune.cli.commands.watch import _panel  # noqa: PLC0415

    running = {**RUNNING}
    running["currentRun"] = {
        **RUNNING["currentRun"],
        "progress": {
            **RUNNING["currentRun"]["progress"],
            "evalLoss": 6.2,
            "tokensPerSecond": 18437.5,
        },
    }
    console = Console(record=True, width=120, color_system=None)
    console.print(_panel(Snapshot.of(job(running)), [7.0, 6.5, 6.0, 5.5]))
    text = console.export_text()
    assert "support  run support-g1  Running" in text
    assert "━" in text and "step 40/144  27%  ETA 1m35s" in text
    assert "loss 6.123  eval loss 6.2  18,438 tokens/s" in text
    assert "loss █▆▃▁" in text


def test_a_finished_run_shows_its_final_losses() -> None:
    done = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "currentRun": {"name": "support-g1", "metrics": {"trainLoss": 5.987, "evalLoss": 5.965}},
    }
    snap = Snapshot.of(job(done))
    assert (snap.loss, snap.eval_loss) == (5.987, 5.965)
    assert snap.line([]) == "support-g1 Succeeded  loss 5.987  eval 5.965"
