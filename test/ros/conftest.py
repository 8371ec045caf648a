"""The real-ROS tier: a real ROS 2 (rclpy, Cyclone DDS, launch), processes of their own.

The `ros` fixture finds a ROS 2 (rosenv.py says how), builds gep_ros in a colcon workspace
and claims a ROS_DOMAIN_ID for this test process, with discovery kept on this machine; it
fails where that does not work. Where no ROS 2 is at hand at all, test/conftest.py leaves
this folder out with one line saying why. Every process a test starts carries a marker in
its environment; any still alive when the session ends is killed and reported as an error.
"""

import os
from pathlib import Path
import pickle
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

from training.synthetic.bag import write_synth_bag

from . import rosenv

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope='session')
def ros():
    """Return the RosEnv every child process runs in (ROS sourced, gep_ros built)."""
    try:
        found = rosenv.build(rosenv.find())
    except (rosenv.Unavailable, RuntimeError) as exc:
        pytest.fail(f'real-ROS tier: {exc}', pytrace=False)
    claim = rosenv.DomainClaim()
    marker = f'GEP_ROS_TEST_RUN={uuid.uuid4().hex}'
    env = dict(found.env, ROS_DOMAIN_ID=str(claim.id), RCUTILS_COLORIZED_OUTPUT='0',
               PYTHONUNBUFFERED='1', HF_HUB_OFFLINE='1')
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # Iron and later
    if found.distro == 'humble':
        env['ROS_LOCALHOST_ONLY'] = '1'
    env.pop('PYTEST_XDIST_WORKER', None)
    name, value = marker.split('=')
    env[name] = value
    found.env = env
    yield found
    left = rosenv.processes_with(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    claim.release()
    assert not left, f'processes left behind by the real-ROS tests: {left}'


class Proc:
    """One child process in its own process group, its output in a log file."""

    def __init__(self, cmd, env, log, cwd=None):
        self.cmd, self.log = cmd, log
        self.out = open(log, 'wb')
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self.out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def text(self):
        self.out.flush()
        return Path(self.log).read_text(errors='replace')

    def wait_for(self, pattern, timeout):
        """Wait until the output matches `pattern`; fail with the output if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        if not re.search(pattern, self.text()):
            pytest.fail(f'{pattern!r} not seen from {self.cmd[:4]} '
                        f'(exit {self.popen.poll()}):\n{self.text()[-4000:]}')

    def stop(self, sig=signal.SIGINT, timeout=10, group=False):
        """Send `sig`; return (exit status, seconds it took), None if it did not exit.

        `group` sends it to the whole process group, as a terminal's Ctrl-C does.
        """
        start = time.monotonic()
        if group:
            os.killpg(self.popen.pid, sig)
        else:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def kill(self):
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()
        self.out.close()


@pytest.fixture
def procs(ros, tmp_path):
    """Start processes in the ROS environment; every group is killed after the test."""
    started = []

    def start(cmd, name, env=None, cwd=None):
        proc = Proc(cmd, dict(ros.env, **(env or {})), tmp_path / f'{name}.log', cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def harness(ros, procs, tmp_path):
    """Run harness.py on a plan; return (exit status, its result dict, its output)."""
    def run(plan, name='harness', timeout=180):
        plan_path, result_path = tmp_path / f'{name}.plan.pkl', tmp_path / f'{name}.out.pkl'
        with open(plan_path, 'wb') as f:
            pickle.dump(plan, f)
        proc = procs([sys.executable, str(HERE / 'harness.py'), str(plan_path),
                      str(result_path)], name)
        try:
            code = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f'harness did not finish in {timeout} s:\n{proc.text()[-4000:]}')
        if not result_path.exists():
            pytest.fail(f'harness wrote no result (exit {code}):\n{proc.text()[-4000:]}')
        with open(result_path, 'rb') as f:
            return code, pickle.load(f), proc.text()
    return run


@pytest.fixture(scope='session')
def weights(tiny_weights):
    return tiny_weights


@pytest.fixture(scope='session')
def street(tmp_path_factory):
    """Simulate 1.5 s of the synthetic street at DAVIS346 size, frames and camera_info too."""
    path = tmp_path_factory.mktemp('bags') / 'street'
    write_synth_bag(path, seconds=1.5, seed=5)
    return path
