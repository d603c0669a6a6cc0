import json
import multiprocessing
import os

import pytest

from core.config import Paths
from nightly.lock import RunInProgressError, exclusive, lock_path


def _paths(tmp_path):
    return Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))


def test_second_holder_fails_clearly_and_the_lock_is_released(tmp_path):
    paths = _paths(tmp_path)
    with exclusive(paths, "nightly-2026-11-10", "run-a"):
        with pytest.raises(RunInProgressError, match=r"run run-a \(pid \d+ on .* since"):
            with exclusive(paths, "nightly-2026-11-10", "run-b"):
                pass
        with exclusive(paths, "nightly-2026-11-11", "run-c"):  # another date is independent
            pass
    assert not os.path.exists(lock_path(paths, "nightly-2026-11-10"))
    with exclusive(paths, "nightly-2026-11-10", "run-b"):
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    paths = _paths(tmp_path)
    dead = multiprocessing.Process(target=lambda: None)
    dead.start()
    dead.join()
    path = lock_path(paths, "nightly-2026-11-10")
    os.makedirs(os.path.dirname(path))
    import socket
    with open(path, "w") as f:
        json.dump({"run_id": "crashed", "pid": dead.pid, "host": socket.gethostname(), "since": "x"}, f)
    with exclusive(paths, "nightly-2026-11-10", "run-new"):
        with open(path) as f:
            assert json.load(f)["run_id"] == "run-new"
