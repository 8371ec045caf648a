"""Shared test fixtures: where the real recordings live, offline settings, the ROS tier check."""

import atexit
import os
from pathlib import Path
import shutil
import tempfile

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real event-camera recordings, kept in the repository with their source and licence
# (test/data/README.md), so that a clone tests itself.
BAGS = REPO / 'test' / 'data' / 'bags'

os.environ.setdefault('HF_HUB_OFFLINE', '1')
# Engines the tests build (ONNX for backend auto on a CPU) stay out of the user's cache, in a
# folder the process that made it removes at exit (pytest-xdist workers inherit it).
if 'GEP_ENGINE_CACHE' not in os.environ:
    os.environ['GEP_ENGINE_CACHE'] = tempfile.mkdtemp(prefix='gep-test-engines-')
    atexit.register(shutil.rmtree, os.environ['GEP_ENGINE_CACHE'], True)


@pytest.fixture(scope='session')
def bags_dir():
    """Return the folder of the real recordings (test/data/bags)."""
    return BAGS


@pytest.fixture(scope='session')
def typestore():
    from gep_ros.msgtypes import typestore as make
    return make()


# Where a ROS 2 is sourced or carried beside the checkout, the real-ROS tier (test/ros/) must
# run: a skip there fails the run instead of passing quietly.
_ros_skips = []


def pytest_runtest_logreport(report):
    if report.skipped and '/ros/' in report.nodeid.replace('\\', '/'):
        _ros_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    from ros import rosenv
    if _ros_skips and rosenv.required():
        print(f'\nreal-ROS tier: {len(_ros_skips)} test(s) skipped although a ROS 2 is at hand '
              f'(first: {_ros_skips[0]})')
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
