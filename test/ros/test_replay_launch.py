"""replay.launch.py as far as a ROS 2 without rosbag2 allows.

Its arguments are checked through `ros2 launch --show-args` and a missing `bag`. Then the
whole launch runs with `ros2 bag play|record` done by rosbag2_shim/ros2 (this project's
player over real DDS, and a small recorder), so what is real is the launch file's logic and
the node: the recorder starts with the output pattern, the bag plays only once the node is
ready, with /clock, the node runs on sim time and answers, and after the bag the node's
~/flush publishes its last windows, then the launch ends by itself.
"""

import json
from pathlib import Path
import re
import shutil

from .test_node_e2e import bag_messages, params_file, reliable

SHIM = Path(__file__).resolve().parent / 'rosbag2_shim'


def test_arguments_are_declared(procs):
    proc = procs(['ros2', 'launch', 'gep_ros', 'replay.launch.py', '--show-args'], 'show')
    assert proc.popen.wait(60) == 0, proc.text()
    declared = set(re.findall(r"^\s+'(\w+)':", proc.text(), re.MULTILINE))
    assert declared >= {'bag', 'output', 'rate', 'linger', 'params_file', 'weights', 'backend',
                        'namespace', 'events_topic', 'events_type', 'image_topic',
                        'camera_info_topic'}


def test_missing_bag_is_one_error(procs, tmp_path):
    proc = procs(['ros2', 'launch', 'gep_ros', 'replay.launch.py', f'output:={tmp_path}/o'],
                 'nobag')
    assert proc.popen.wait(60) != 0
    assert re.search(r"missing required argument.*'bag'|'bag'.*not .*provided", proc.text()), \
        proc.text()


def test_replay_plays_after_ready_on_sim_time_records_outputs_and_ends(
        ros, procs, weights, street, tmp_path):
    shim_log = tmp_path / 'shim'
    shim_log.mkdir()
    config = params_file(tmp_path / 'robot.yaml', weights=str(weights), backend='cpu',
                         **{'cam0.events_topic': '/dvs/events',
                            'cam0.image_topic': '/dvs/image_raw'},
                         **reliable('/dvs/events', '/dvs/image_raw'))
    env = {'PATH': f'{SHIM}:{ros.env["PATH"]}', 'GEP_SHIM_LOG': str(shim_log),
           'GEP_REAL_ROS2': shutil.which('ros2', path=ros.env['PATH']),
           'GEP_SHIM_WAIT_FOR': '/dvs/events,/dvs/image_raw'}
    proc = procs(['ros2', 'launch', 'gep_ros', 'replay.launch.py', f'bag:={street}',
                  f'output:={tmp_path}/out', f'params_file:={config}', 'linger:=100.0',
                  'namespace:=robot1'],
                 'replay', env=env)
    assert proc.popen.wait(180) == 0, proc.text()[-4000:]
    log = proc.text()
    ready = re.search(r'\]: ready: .*sim time \(/clock\)', log)
    played = log.find('shim: play started')
    assert ready and played > ready.end(), log[-4000:]  # the bag waits for the node
    # The node, however slow, published every window before the launch ended: on the flush
    # (found in the node's namespace), not on linger.
    flushed = re.search(r'\[robot1\.perception_node\]: flushed: (\d+) windows', log)
    assert flushed and log.find('stopped: ') > flushed.end(), log[-4000:]
    assert re.search(r"Trigger_Response\(success=True, message='\d+ windows", log), log[-4000:]
    assert re.search(r'\[perception_node-\d\]: process has finished cleanly', log)
    record = json.loads((shim_log / 'record.json').read_text())
    assert record['argv'][:3] == ['-o', f'{tmp_path}/out', '--use-sim-time']
    pattern = re.compile(record['argv'][record['argv'].index('-e') + 1])
    for topic in ('/dvs/depth/image', '/dvs/segmentation/labels', '/dvs/segmentation/color',
                  '/dvs/depth/points', '/diagnostics'):
        assert pattern.search(topic), topic
    for topic in ('/dvs/events', '/dvs/image_raw', '/clock'):
        assert not pattern.search(topic), topic
    play = json.loads((shim_log / 'play.json').read_text())
    assert play['argv'] == [str(street), '--rate', '1.0', '--clock']
    # The node answered every frame; the recorder, which like ros2 bag record subscribes to
    # what it discovers, has them all but for any published before it matched.
    frames = len(bag_messages(street, ['/dvs/image_raw']))
    assert f'stopped: {frames} windows, {3 * frames} outputs published, 0 windows dropped' \
        in log, log[-3000:]
    for topic in ('/dvs/depth/image', '/dvs/segmentation/labels', '/dvs/segmentation/color'):
        assert frames - 5 <= record['counts'][topic] <= frames, record
    assert record['counts']['/diagnostics'] >= 1
