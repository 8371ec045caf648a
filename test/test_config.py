"""The shipped parameter file and launch files agree with the code (no ROS needed)."""

import ast
import py_compile
import re

from conftest import REPO
import pytest
import yaml

from gep_ros.params import (CAMERA_PARAMS, flatten, load_params, make_params,
                            node_key_matches, NODE_NAME, PARAMS)

CONFIG = REPO / 'config' / 'perception.yaml'
LAUNCH_FILES = sorted((REPO / 'launch').glob('*.launch.py'))


def test_config_is_the_schema_defaults():
    loaded = load_params(CONFIG)
    defaults = make_params()
    assert loaded.values == defaults.values
    assert loaded.cameras == defaults.cameras
    section = yaml.safe_load(CONFIG.read_text())[f'/**/{NODE_NAME}']['ros__parameters']
    expected = set(PARAMS) | {f'cam0.{key}' for key in CAMERA_PARAMS}
    assert set(flatten(section)) == expected  # every parameter written out, none extra


def test_config_documents_every_parameter():
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r'^(\s+)(\w+): \S', line)
        if match and match.group(2) != 'ros__parameters':
            above = lines[i - 1]
            assert above.startswith(match.group(1) + '# '), f'{CONFIG.name}:{i + 1}: {line}'


def test_config_floats_written_as_floats():
    # ROS 2 refuses an integer for a double parameter, so 50 where 50.0 is meant would not
    # start the node.
    section = flatten(yaml.safe_load(CONFIG.read_text())[f'/**/{NODE_NAME}']['ros__parameters'])
    for name, value in section.items():
        default = (PARAMS.get(name) or CAMERA_PARAMS[name.split('.', 1)[1]])[0]
        assert type(value) is type(default), name


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_defines_generate_launch_description(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / 'launch.pyc'), doraise=True)
    functions = {node.name for node in ast.parse(path.read_text()).body
                 if isinstance(node, ast.FunctionDef)}
    assert 'generate_launch_description' in functions


def test_launch_files_and_console_script_are_installed():
    assert {p.name for p in LAUNCH_FILES} >= {'perception.launch.py', 'replay.launch.py'}
    setup = (REPO / 'setup.py').read_text()
    assert "'perception_node = gep_ros.perception_node:main'" in setup
    assert "glob('launch/*.launch.py')" in setup and "glob('config/*.yaml')" in setup


@pytest.mark.parametrize('key,fqn,applies', [
    ('/**', '/perception_node', True), ('/**', '/robot1/perception_node', True),
    ('perception_node', '/perception_node', True), ('/perception_node', '/perception_node', True),
    ('/perception_node', '/robot1/perception_node', False),
    ('/**/perception_node', '/perception_node', True),
    ('/**/perception_node', '/a/b/perception_node', True),
    ('/*/perception_node', '/robot1/perception_node', True),
    ('/*/perception_node', '/perception_node', False),
    ('/robot1/perception_node', '/robot1/perception_node', True),
    ('/other_node', '/perception_node', False),
])
def test_parameter_file_keys_apply_by_ros_rules(key, fqn, applies):
    """The rules rcl applies (the real-ROS tier checks the same keys on a running node)."""
    assert node_key_matches(key, fqn) is applies


def test_replay_reads_every_section_that_applies(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text(yaml.safe_dump({
        '/**': {'ros__parameters': {'backend': 'cpu', 'max_batch': 2}},
        '/perception_node': {'ros__parameters': {'max_batch': 3}},
        '/other_node': {'ros__parameters': {'queue_size': 1}}}))
    assert load_params(path).values['backend'] == 'cpu'
    assert load_params(path).values['max_batch'] == 3  # the later section wins, as in rcl
    assert load_params(path).values['queue_size'] == make_params().values['queue_size']
