"""Code style as ROS 2 lints it (ament_flake8's rule set, configured in setup.cfg)."""

import subprocess
import sys

from conftest import REPO


def test_flake8_clean():
    result = subprocess.run([sys.executable, '-m', 'flake8'], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
