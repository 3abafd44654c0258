"""Test fixtures that the test run shares live as long as it does, not longer."""

import os
import threading
import time


def exit_with(parent_pid: int) -> None:
    """Exits this process once `parent_pid` is gone (0: never)."""
    if not parent_pid:
        return

    def watch() -> None:
        while True:
            try:
                os.kill(parent_pid, 0)
            except OSError:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
