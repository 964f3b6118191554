"""The progress bar: drawn on a terminal only, with cell k/N, the current cell and an ETA."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

from conftest import FAST, ROOT

from cnnbench.execution.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_line_shows_cell_count_label_and_eta():
    clock = Clock()
    progress = Progress(4, io.StringIO(), enabled=False, clock=clock)
    progress.start(0, "torch alexnet bs32 cpu fp32 vendor")
    line = progress.line(120)
    assert "0/4" in line and "cell 1: torch alexnet bs32" in line and "ETA after the first cell" in line
    clock.now += 10
    progress.done("ok")
    progress.start(1, "torch alexnet bs64 cpu fp32 vendor")
    clock.now += 4
    line = progress.line(120)
    # one cell took 10 s; 3 left, the running one 4 s in: 3 x 10 - 4
    assert "1/4" in line and "cell 2: torch alexnet bs64" in line and "14s elapsed, ETA 26s" in line
    assert len(progress.line(40)) < 40  # clipped to the terminal


def test_durations_format():
    assert [format_duration(s) for s in (0, 59.4, 61, 3600 * 2 + 65)] == ["0s", "59s", "1m01s", "2h01m"]


def test_disabled_bar_writes_nothing():
    stream = io.StringIO()
    progress = Progress(2, stream, enabled=False)
    progress.start(0, "x")
    progress.say("measuring idle power")
    progress.done("ok")
    progress.close()
    assert stream.getvalue() == ""


def _grid_with_stderr_on_a_terminal(*extra: str) -> tuple[int, str, str]:
    env = dict(os.environ, CNNBENCH_FAKE_STEP_S="0.01")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")])
    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cnnbench", "compare", "--frameworks", "fake", "--network",
                             "lenet", "--batch-size", "1,2,3", "--device", "cpu", *FAST, *extra],
                            stdout=subprocess.PIPE, stderr=secondary, env=env, text=True)
    os.close(secondary)
    terminal = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(main)
    return proc.returncode, out, terminal.decode(errors="replace")


def test_bar_is_drawn_on_a_terminal_and_erased_before_the_table(fake_site):
    code, out, terminal = _grid_with_stderr_on_a_terminal()
    assert code == 0
    assert "1/3" in terminal and "cell 3: fake lenet bs3" in terminal and "ETA" in terminal
    assert "\r\x1b[K" in terminal
    assert "stored as run 1" in terminal
    assert "ETA" not in out and "[" not in out.splitlines()[0]  # the table on stdout carries no bar


def test_quiet_and_json_turn_the_bar_off(fake_site):
    for flag in ("--quiet", "--json"):
        code, out, terminal = _grid_with_stderr_on_a_terminal(flag)
        assert code == 0
        assert "ETA" not in terminal and "\x1b[K" not in terminal, flag


def test_no_bar_when_stderr_is_a_pipe(cli, fake_site):
    proc = cli("compare", "--frameworks", "fake", "--network", "lenet", "--batch-size", "1,2", "--device", "cpu", *FAST)
    assert proc.returncode == 0
    assert "ETA" not in proc.stderr and "\x1b[K" not in proc.stderr
