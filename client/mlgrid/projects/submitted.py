"""A started project run: wait for it, cancel it; its end marks the tracking run FINISHED, FAILED or KILLED."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable

from mlgrid.client import MlgridClient

_logger = logging.getLogger(__name__)


class SubmittedRun:
    """Subclasses say how the run ends (`_wait_succeeded`) and how it is stopped (`_stop`)."""

    def __init__(self, run_id: str, client: MlgridClient, cleanup: Callable[[], None] = lambda: None):
        self.run_id = run_id
        self._client = client
        self._cleanup = cleanup
        self._stopped = False  # cancelled or interrupted: the run ends KILLED
        self._final_status: str | None = None

    def _wait_succeeded(self) -> bool:
        raise NotImplementedError

    def _stop(self, signum: int) -> None:
        raise NotImplementedError

    def wait(self) -> bool:
        """Wait for the run's end, record its status, and say whether it succeeded."""
        if self._final_status is None:
            succeeded = self._wait_succeeded()
            self._final_status = "KILLED" if self._stopped else "FINISHED" if succeeded else "FAILED"
            self._client.set_terminated(self.run_id, self._final_status)
            self._cleanup()
        return self._final_status == "FINISHED"

    def get_status(self) -> str:
        return self._final_status or self._client.get_run(self.run_id).info.status

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self._stopped = True
        self._stop(signum)

    def cancel(self) -> None:
        """Stop the run, and mark it KILLED."""
        self.stop()
        self.wait()

    @contextlib.contextmanager
    def forwarding_signals(self):
        """While waiting in the main thread, SIGINT and SIGTERM stop the run instead of this process."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def forward(signum, _frame):
            _logger.info("=== Signal %s: stopping run %s ===", signal.Signals(signum).name, self.run_id)
            self.stop(signum)

        previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@contextlib.contextmanager
def _children_take_stop_signals():
    """A child inherits the signals its parent ignores (a job a shell script starts in the background ignores
    SIGINT), and would then ignore the one forwarded to stop it; a signal caught here is at its default in a
    child started meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ignored = [signum for signum in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(signum) == signal.SIG_IGN]
    for signum in ignored:
        signal.signal(signum, lambda *_: None)
    try:
        yield
    finally:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)


class LocalSubmittedRun(SubmittedRun):
    """The command as a child process in a process group of its own, its output going straight to the terminal."""

    def __init__(self, run_id: str, client: MlgridClient, argv: list[str], env: dict[str, str], cwd: str,
                 cleanup: Callable[[], None] = lambda: None):
        super().__init__(run_id, client, cleanup)
        with _children_take_stop_signals():
            self.process = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)
        self._signalled = False

    def _wait_succeeded(self) -> bool:
        return self.process.wait() == 0

    def _stop(self, signum: int) -> None:
        """Forward the signal to the command's process group; a second one kills it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL if self._signalled else signum)
        self._signalled = True
