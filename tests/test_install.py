"""The install step is idempotent: a stamp keyed on the pinned inputs."""
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _copy_project(tmp_path):
    for name in ("requirements.txt", "setup.py", "tools/install.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _check(project, venv, tmp_path):
    return subprocess.run(["bash", str(project / "tools/install.sh"), "--check"], env={"VENV": str(venv), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True)


def test_rerun_with_nothing_changed_takes_seconds():
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "tools/install.sh")], capture_output=True, text=True, check=True)
    assert "up to date" in done.stdout
    assert time.monotonic() - start < 10


def test_the_stamp_follows_the_pinned_requirements(tmp_path):
    project = _copy_project(tmp_path / "p")
    venv = tmp_path / "venv"
    venv.mkdir()
    first = _check(project, venv, tmp_path)
    assert first.returncode == 1 and "install needed" in first.stdout
    key = first.stdout.split("no stamp ")[1].split()[0]
    (venv / f".installed-{key}").touch()
    assert _check(project, venv, tmp_path).returncode == 0
    with open(project / "requirements.txt", "a") as f:
        f.write("extra-package==1.0\n")
    again = _check(project, venv, tmp_path)
    assert again.returncode == 1 and key not in again.stdout


def test_a_python_other_than_3_11_is_refused_before_a_venv_is_made(tmp_path):
    """A host whose python3 is 3.12 built the venv with it, then failed deep in pip (no wheels for the pins)."""
    project = _copy_project(tmp_path / "p")
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\nexec /usr/bin/env python3 -c 'import sys; sys.exit(1)'\n")  # any version but 3.11
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", str(project / "tools/install.sh")], capture_output=True, text=True,
                          env={"VENV": str(venv), "PYTHON": str(fake), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"[install] {fake} is not Python 3.11, which the pins need (setup.py): set " \
                          f"PYTHON=/path/to/python3.11\n"
    assert not venv.exists()
