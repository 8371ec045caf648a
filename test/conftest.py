"""Shared test fixtures: where the real recordings live, offline settings, the ROS tier check."""

import atexit
import os
from pathlib import Path
import shutil
import sys
import tempfile

import pytest

from ros import rosenv

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
# What the workers share beyond engines (tiny_weights), made and removed the same way.
if 'GEP_TEST_SHARED' not in os.environ:
    os.environ['GEP_TEST_SHARED'] = tempfile.mkdtemp(prefix='gep-test-shared-')
    atexit.register(shutil.rmtree, os.environ['GEP_TEST_SHARED'], True)


def _threads_per_worker():
    """Return the cores each pytest-xdist worker has (None outside xdist or if already set).

    Every worker's torch (and OpenMP) would otherwise start one thread per core. With two
    workers on two cores, the four threads spin while they wait for each other: the model
    tests took twice as long as with one thread each. Processes the tests start inherit it.
    """
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if not workers or 'OMP_NUM_THREADS' in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // int(workers))


_THREADS = _threads_per_worker()
if _THREADS:
    os.environ['OMP_NUM_THREADS'] = str(_THREADS)  # read by torch when it is imported
    if 'torch' in sys.modules:  # imported already (by a plugin): tell it directly
        sys.modules['torch'].set_num_threads(_THREADS)


@pytest.fixture(scope='session')
def bags_dir():
    """Return the folder of the real recordings (test/data/bags)."""
    return BAGS


@pytest.fixture(scope='session')
def tiny_weights():
    """Return the folder of gep_tiny at its default input size, seeded: the tests' deployed model.

    Saved once for all pytest-xdist workers, so that they share one digest and with it the
    engines built from it (tiny_onnx): the same weights saved twice need not give the same
    file (safetensors writes its header's metadata in no fixed order).
    """
    shared = Path(os.environ['GEP_TEST_SHARED'])
    folder = shared / 'gep_tiny'
    with rosenv.locked(shared / 'gep_tiny.lock'):
        if not folder.exists():
            import torch

            from gep_model.artifact import save_artifact
            from gep_model.model import GEPModel
            from gep_model.registry import variant_config
            torch.manual_seed(0)
            save_artifact(GEPModel(variant_config('gep_tiny')), folder)
    return folder


TINY_MAX_BATCH = 4  # the node's and replay's default max_batch: their ONNX key


@pytest.fixture(scope='session')
def tiny_onnx(tiny_weights):
    """Return the artifact of tiny_weights once its ONNX export lies in the engine cache.

    Backend auto on a CPU (replay, the node) and the onnxruntime tests then load it instead
    of exporting again (about 15 s each). The pytest-xdist workers share the cache folder; a
    lock in it makes one of them export while the other waits.
    """
    from gep_model.artifact import load_artifact
    from gep_model.runtime import make_runtime
    artifact = load_artifact(tiny_weights)
    with rosenv.locked(Path(os.environ['GEP_ENGINE_CACHE']) / 'tiny_onnx.lock'):
        make_runtime(artifact, 'onnxruntime', TINY_MAX_BATCH)
    return artifact


@pytest.fixture(scope='session')
def typestore():
    from gep_ros.msgtypes import typestore as make
    return make()


# Files whose tests take tens of seconds, longest first (make test on 2 cores, a cold
# TorchInductor cache). `make test` hands whole files to the pytest-xdist workers in
# collection order (--dist loadfile --no-loadscope-reorder), so these start first and the two
# workers finish together; the other files follow in their usual order.
LONG_FILES = ('test_runtime.py', 'ros/test_node_e2e.py', 'test_robot_install.py',
              'ros/test_node_params.py', 'test_replay.py', 'test_artifact.py',
              'test_image_wire.py', 'test_evt3_kernel.py', 'test_experiment.py', 'test_lint.py',
              'ros/test_replay_launch.py', 'test_training_stages.py',
              'test_training_engine.py', 'test_synth.py', 'test_event_packet.py')


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}

    def file_rank(item):
        return rank.get(item.path.relative_to(REPO / 'test').as_posix(), len(LONG_FILES))

    items.sort(key=file_rank)  # stable: a file's tests keep their order


# The real-ROS tier (test/ros/) runs where a ROS 2 is sourced or carried beside the checkout;
# elsewhere it is left out, with one line saying why, and nothing else is skipped for it.
# Where it must run, a test of it that skips fails the run instead of passing quietly.
ROS_TIER_SKIPPED = None if rosenv.required() else (
    'no ROS 2: none is sourced (ROS_DISTRO unset) and no shared/ros2/ros2-*.tar.gz lies '
    'beside the checkout')
collect_ignore = ['ros'] if ROS_TIER_SKIPPED else []
_ros_skips = []


def pytest_report_header(config):
    if ROS_TIER_SKIPPED:
        return f'real-ROS tier skipped: {ROS_TIER_SKIPPED}'
    return None


def pytest_terminal_summary(terminalreporter):
    if ROS_TIER_SKIPPED:
        terminalreporter.write_line(f'real-ROS tier skipped: {ROS_TIER_SKIPPED}')


def pytest_runtest_logreport(report):
    if report.skipped and '/ros/' in report.nodeid.replace('\\', '/'):
        _ros_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _ros_skips:
        print(f'\nreal-ROS tier: {len(_ros_skips)} test(s) skipped although a ROS 2 is at hand '
              f'(first: {_ros_skips[0]})')
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
