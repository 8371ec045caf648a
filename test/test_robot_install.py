"""The robot install: what the node needs, and only that, on Humble and Jazzy.

requirements-robot.txt resolves from PyPI for Python 3.10 and 3.12 on x86_64 and aarch64, and
the node's code runs without the training, plotting and bag packages.
"""

import ast
from concurrent.futures import ThreadPoolExecutor
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

from conftest import REPO
import pytest

REQUIREMENTS = REPO / 'requirements-robot.txt'
# Checked by hand against ros/rosdistro (rosdep/python.yaml, rosdep/base.yaml,
# humble/distribution.yaml, jazzy/distribution.yaml; commit 8468e88 of August 2026): each key is
# a released package of both distributions or a rosdep rule for both jammy and noble.
# std_srvs (common_interfaces) and ros2service (ros2cli) are released in both, as
# ros-<distro>-std-srvs and ros-<distro>-ros2service.
# dvs_msgs is in neither (its ROS 2 port is built from source), and must not appear.
ROSDEP_KEYS = {
    'rclpy', 'rcl_interfaces', 'std_msgs', 'sensor_msgs', 'builtin_interfaces',
    'diagnostic_msgs', 'std_srvs', 'event_camera_msgs', 'launch', 'launch_ros', 'ros2bag',
    'ros2service', 'rosbag2_storage_default_plugins', 'rosbag2_storage_mcap', 'python3-numpy',
    'python3-opencv', 'python3-yaml', 'python3-dev', 'ament_flake8', 'python3-pytest',
    'rosgraph_msgs', 'sensor_msgs_py'}
# name: (python, platform, what apt brings that pip must keep). Humble's numpy 1.21.5 is below
# onnxruntime's floor (pip puts numpy 1.26 into the venv; the test checks it stays 1.x), and
# its PyYAML 5.4.1 has no wheel for Python 3.10 to resolve against (timm's hub asks >=5.1).
ROBOTS = {
    'humble-x86_64': ('3.10', 'x86_64', {}),
    'jazzy-x86_64': ('3.12', 'x86_64', {'numpy': '1.26.4', 'pyyaml': '6.0.1'}),
    'humble-aarch64': ('3.10', 'aarch64', {}),
    'jazzy-aarch64': ('3.12', 'aarch64', {'numpy': '1.26.4', 'pyyaml': '6.0.1'}),
}
NODE_NEEDS = {'torch', 'torchvision', 'timm', 'safetensors', 'numpy', 'onnxruntime', 'onnx',
              'onnxscript'}
# PyYAML (timm wants it) comes from apt and pip sees it there: it may appear below.
NOT_ON_A_ROBOT = {'rosbags', 'matplotlib', 'tensorboard', 'h5py', 'hdf5plugin', 'pytest',
                  'opencv-python', 'opencv-python-headless'}


def test_package_xml_keys_resolve_on_humble_and_jazzy():
    deps = {e.text for e in ET.parse(REPO / 'package.xml').getroot()
            if e.tag.endswith('depend')}
    assert 'dvs_msgs' not in deps and 'cv_bridge' not in deps
    assert deps <= ROSDEP_KEYS, deps - ROSDEP_KEYS
    # replay.launch.py runs `ros2 bag play` and `ros2 bag record`, mcap bags included, and
    # `ros2 service call` of the node's std_srvs/Trigger ~/flush.
    assert {'ros2bag', 'rosbag2_storage_mcap', 'ros2service', 'std_srvs'} <= deps


def test_robot_requirements_name_only_what_the_node_needs():
    names = {re.split(r'[<>=!; ]', line)[0].lower() for line in REQUIREMENTS.read_text()
             .splitlines() if line.strip() and not line.startswith('#')}
    assert names == NODE_NEEDS
    assert not names & NOT_ON_A_ROBOT
    assert '==' not in REQUIREMENTS.read_text()  # ranges, next to ROS's packages


def _uv():
    found = Path(sys.executable).parent / 'uv'
    found = str(found) if found.exists() else shutil.which('uv')
    assert found, 'uv (requirements-dev.txt) resolves for other platforms: pip install uv'
    return found


def _resolve(robot, tmp):
    """Resolve requirements-robot.txt for a robot from PyPI alone; return {name: version}.

    With uv rather than `pip install --dry-run --platform ...`: pip evaluates the markers of
    dependencies on the machine that runs it (torch's `platform_machine == "x86_64"` nvidia
    wheels), so it cannot resolve for aarch64 here, and its dry run takes minutes a robot.
    UV_NO_CONFIG and --index-url keep out this machine's indexes and pip's constraints, so
    what is resolved is what a robot gets from PyPI.
    """
    python, arch, apt = ROBOTS[robot]
    extra = tmp / f'{robot}.txt'
    extra.write_text(''.join(f'{name}=={version}\n' for name, version in apt.items()))
    env = dict(os.environ, UV_NO_CONFIG='1', UV_CACHE_DIR=str(REPO / '.cache' / 'uv'))
    cmd = [_uv(), 'pip', 'compile', '--quiet', '--no-header', '--index-url',
           'https://pypi.org/simple', '--python-version', python, '--python-platform',
           f'{arch}-manylinux_2_28', '--only-binary', ':all:', str(REQUIREMENTS), str(extra)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f'{robot}: {out.stderr[-3000:]}'
    found = re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', out.stdout, re.MULTILINE)
    return {name.lower().replace('_', '-'): version for name, version in found}


@pytest.fixture(scope='module', autouse=True)
def resolutions(tmp_path_factory):
    """Start resolving for every robot at the module's first test; return {robot: future}.

    The resolution waits on PyPI most of its time, so the node's own test (CPU) runs
    meanwhile instead of after it.
    """
    tmp = tmp_path_factory.mktemp('robots')
    with ThreadPoolExecutor(len(ROBOTS)) as pool:
        yield {robot: pool.submit(_resolve, robot, tmp) for robot in ROBOTS}


def node_imports():
    """Return the project modules perception_node.py imports, at the top or in a function."""
    found = set()
    for node in ast.walk(ast.parse((REPO / 'gep_ros' / 'perception_node.py').read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add(f'gep_ros.{node.module}' if node.level else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return sorted(name for name in found if name.split('.')[0] in ('gep_ros', 'gep_model'))


NODE_CODE = textwrap.dedent("""
    import importlib
    import sys
    for name in BLOCKED:
        sys.modules[name] = None  # importing it now raises ImportError
    for name in NODE_IMPORTS:
        importlib.import_module(name)
    import numpy as np
    import torch
    from gep_model.artifact import load_artifact, save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    from gep_model.runtime import make_runtime
    from gep_ros.params import make_params
    from gep_ros.pipeline import Pipeline
    from gep_ros.wire.dvs import encode_event_array
    from gep_ros.wire.events import make_events
    from gep_ros.wire.std import Header
    torch.manual_seed(0)
    save_artifact(GEPModel(variant_config('gep_tiny', input_size=(42, 56))), FOLDER)
    out = []
    params = make_params({'cam0.events_topic': '/dvs/events', 'window.rate_hz': 20.0})
    # onnxruntime: what backend auto picks on a robot without a GPU (the ONNX export included).
    runtime = make_runtime(load_artifact(FOLDER), 'onnxruntime', 2, cache_dir=FOLDER + '-onnx',
                           threads=1)
    pipe = Pipeline(params, runtime, lambda topic, data: out.append(topic),
                    block_when_full=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        t = np.sort(rng.integers(i * 25_000_000, (i + 1) * 25_000_000, 500)) + 10**18
        events = make_events(rng.integers(0, 64, 500), rng.integers(0, 48, 500), t,
                             rng.integers(0, 2, 500))
        pipe.feed('/dvs/events', encode_event_array(Header(int(t[0]), 'dvs'), 48, 64, events),
                  int(t[-1]))
    assert pipe.flush(60)
    pipe.close()
    assert sorted(set(out)) == ['/dvs/depth/image', '/dvs/segmentation/color',
                                '/dvs/segmentation/labels'], out
    print('windows', out.count('/dvs/depth/image'))
""")


def test_node_code_runs_without_training_plotting_and_bag_packages(tmp_path):
    assert {'gep_ros.pipeline', 'gep_ros.params', 'gep_model.runtime'} <= set(node_imports())
    blocked = sorted(NOT_ON_A_ROBOT - {'pytest', 'opencv-python', 'opencv-python-headless'}
                     | {'training'})
    code = (f'BLOCKED = {blocked!r}\nNODE_IMPORTS = {node_imports()!r}\n'
            f'FOLDER = {str(tmp_path / "tiny")!r}\n' + NODE_CODE)
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) >= 1


@pytest.mark.parametrize('section,key,value', [('build_scripts', 'executable',
                                                '/usr/bin/env python3')])
def test_installed_scripts_run_with_the_python3_first_on_path(section, key, value):
    """Check the shebang colcon writes for the installed scripts from setup.cfg."""
    import configparser
    config = configparser.ConfigParser()
    config.read(REPO / 'setup.cfg')
    assert config[section][key] == value


def test_robot_requirements_resolve_for_humble_and_jazzy_on_x86_64_and_aarch64(resolutions):
    found = {robot: future.result() for robot, future in resolutions.items()}
    for robot, versions in found.items():
        assert NODE_NEEDS <= set(versions), (robot, sorted(versions))
        assert int(versions['numpy'].split('.')[0]) == 1, (robot, versions['numpy'])
        # torchvision 0.(N+15) is built for torch 2.N; another pair fails to import.
        torch_minor, vision_minor = (int(versions[name].split('.')[1])
                                     for name in ('torch', 'torchvision'))
        assert vision_minor == torch_minor + 15, (robot, versions['torch'],
                                                  versions['torchvision'])
        for name, version in ROBOTS[robot][2].items():
            assert versions[name] == version, (robot, name)  # apt's copy is kept
        assert not set(versions) & NOT_ON_A_ROBOT, robot
