"""Find a real ROS 2 for the tests the way a robot developer has one, and build gep_ros in it.

1. An already sourced install (`ROS_DISTRO` set): its environment is used as it is.
2. Else the ROS 2 core carried beside the checkout (`../shared/ros2/*.tar.gz`, or the file
   `GEP_ROS2_TARBALL` names), unpacked once into `.cache/ros2/<sha256 prefix>/` in the
   checkout (ignored by git) and sourced from there.
3. Else there is no ROS 2: `find()` raises `Unavailable` with one line saying why.

This module never imports rclpy: the test process stays ROS-free, and everything that needs
ROS runs in child processes started with `RosEnv.env`. Run it as a script to print the
environment's summary (`python test/ros/rosenv.py`).
"""

from contextlib import contextmanager
from dataclasses import dataclass
import fcntl
import hashlib
import os
from pathlib import Path
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / '.cache' / 'ros2'
# The python that runs the tests (the project venv) runs the ROS processes too: it has
# torch and the package, and ROS's own Python modules come from the sourced PYTHONPATH.
PYTHON_BIN = Path(sys.executable).parent


class Unavailable(Exception):
    """No ROS 2 here; the message is the one line the skipped tests show."""


@dataclass
class RosEnv:
    env: dict  # the sourced environment, with gep_ros's colcon install on top once built
    prefix: str  # the ROS installation
    distro: str
    origin: str  # 'sourced' or the tarball's name


def shared_tarball():
    """Return the carried ROS 2 tarball, or None where the checkout has none beside it."""
    named = os.environ.get('GEP_ROS2_TARBALL')
    if named:
        return Path(named)
    found = sorted((REPO.parent / 'shared' / 'ros2').glob('ros2-*.tar.gz'))
    return found[0] if found else None


def required():
    """Tell whether the real-ROS tier must run (a ROS 2 is sourced or carried beside us)."""
    return bool(os.environ.get('ROS_DISTRO')) or shared_tarball() is not None


@contextmanager
def locked(path):
    """Hold an exclusive lock on `path` (pytest-xdist workers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def unpack(tarball):
    """Unpack the tarball once into the cache; return the folder holding its setup.bash."""
    target = CACHE / _sha256(tarball)[:16]
    with locked(CACHE / 'unpack.lock'):
        if not (target / '.complete').exists():
            shutil.rmtree(target, ignore_errors=True)
            scratch = Path(tempfile.mkdtemp(prefix='unpack-', dir=CACHE))
            with tarfile.open(tarball) as tar:
                tar.extractall(scratch, filter='tar')
            scratch.rename(target)
            (target / '.complete').touch()
    setups = sorted(target.glob('*/setup.bash'))
    if len(setups) != 1:
        raise RuntimeError(f'{tarball.name}: expected one */setup.bash inside, found '
                           f'{len(setups)}')
    return setups[0].parent


def sourced(script, base=None):
    """Return the environment after `source script` in bash (setup.bash fails under -u)."""
    base = dict(os.environ if base is None else base)
    base['PATH'] = f'{PYTHON_BIN}{os.pathsep}{base.get("PATH", "")}'
    out = subprocess.run(['bash', '-c', f'set +u; source "{script}" >/dev/null && env -0'],
                         env=base, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f'sourcing {script} failed: {out.stderr.decode().strip()}')
    env = dict(item.split('=', 1) for item in out.stdout.decode().split('\0') if '=' in item)
    env['PATH'] = f'{PYTHON_BIN}{os.pathsep}{env["PATH"]}'  # the venv's python3 first
    return env


def find():
    """Return the RosEnv to test with; raise Unavailable where there is none."""
    if os.environ.get('ROS_DISTRO'):
        env = dict(os.environ)
        env['PATH'] = f'{PYTHON_BIN}{os.pathsep}{env.get("PATH", "")}'
        prefix = env.get('AMENT_PREFIX_PATH', '').split(os.pathsep)[-1]
        return RosEnv(env, prefix, env['ROS_DISTRO'], 'sourced')
    tarball = shared_tarball()
    if tarball is None:
        raise Unavailable('none is sourced (ROS_DISTRO unset) and no shared/ros2/ros2-*.tar.gz '
                          'lies beside the checkout')
    prefix = unpack(tarball)
    env = sourced(prefix / 'setup.bash')
    return RosEnv(env, str(prefix), env.get('ROS_DISTRO', '?'), tarball.name)


def build(ros):
    """Build gep_ros with colcon (symlinked: sources and launch files stay live); return its env.

    The workspace lives in the cache, one per ROS installation, so the package is found
    through the ament index exactly as on a robot (`ros2 launch gep_ros ...`).
    """
    key = hashlib.sha256(ros.prefix.encode()).hexdigest()[:12]
    ws = CACHE / f'ws-{ros.distro}-{key}'
    with locked(CACHE / f'{ws.name}.lock'):
        out = subprocess.run(
            [sys.executable, '-m', 'colcon', 'build', '--paths', str(REPO),
             '--build-base', str(ws / 'build'), '--install-base', str(ws / 'install'),
             '--symlink-install', '--event-handlers', 'console_direct-'],
            cwd=ws.parent, env=ros.env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f'colcon build of gep_ros failed:\n{out.stdout}\n{out.stderr}')
    env = sourced(ws / 'install' / 'local_setup.bash', ros.env)
    return RosEnv(env, ros.prefix, ros.distro, ros.origin)


class DomainClaim:
    """A ROS_DOMAIN_ID (1..101) this test process holds alone, through a lock file.

    Concurrent runs (and pytest-xdist workers) each hold their own, so none sees another's
    topics; the lock goes with the process.
    """

    def __init__(self):
        ids = list(range(1, 102))
        random.shuffle(ids)
        for domain in ids:
            f = open(Path(tempfile.gettempdir()) / f'gep_ros_domain_{domain}.lock', 'w')
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.file, self.id = f, domain
            return
        raise RuntimeError('every ROS_DOMAIN_ID from 1 to 101 is held by another test run')

    def release(self):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def processes_with(marker):
    """Return the pids of live processes whose environment holds `marker` (NAME=value)."""
    needle = marker.encode() + b'\0'
    pids = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / 'environ').read_bytes() + b'\0':
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


if __name__ == '__main__':
    try:
        found = find()
    except Unavailable as exc:
        sys.exit(f'real-ROS tier: skipped: {exc}')
    print(f'ROS 2 {found.distro} from {found.origin} at {found.prefix}')
