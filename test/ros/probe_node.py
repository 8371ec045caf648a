"""Start PerceptionNode inside this process on the real rclpy and report what it declared.

    python probe_node.py OUT.json [ROS ARGUMENTS ...]

Runs under a sourced ROS 2. The node starts from the given ROS arguments (`-p`,
`--params-file`, `-r`), then: every parameter's descriptor, the QoS of its subscriptions
and publishers, Python log records of every severity sent through its logging bridge from
one call site (rclpy refuses a call site that changes severity), and what publishing does
after the context is shut down. Written to OUT.json for the test to assert on.
"""

import json
import logging
import sys

import rclpy

from gep_ros.perception_node import PerceptionNode


def qos(profile):
    return {'reliability': profile.reliability.name, 'history': profile.history.name,
            'depth': profile.depth}


def describe(node, name):
    d = node.describe_parameter(name)
    return {'description': d.description, 'read_only': d.read_only,
            'additional_constraints': d.additional_constraints,
            'integer_range': [(r.from_value, r.to_value, r.step) for r in d.integer_range],
            'floating_point_range': [(r.from_value, r.to_value, r.step)
                                     for r in d.floating_point_range],
            'value': node.get_parameter(name).value}


def main(out_path, *ros_args):
    rclpy.init(args=['--ros-args', *ros_args])
    node = PerceptionNode()
    report = {
        'parameters': {name: describe(node, name) for name in node._parameters},
        'subscriptions': {s.topic_name: qos(s.qos_profile) for s in node.subscriptions},
        'publishers': {p.topic_name: qos(p.qos_profile) for p in node.publishers},
        'hardware_id': node.hardware_id,
    }
    log = logging.getLogger('gep_ros.pipeline')
    errors = []
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.INFO, logging.WARNING):
        try:
            log.log(level, 'probe record at level %d', level)  # one call site, all severities
        except Exception as exc:  # noqa: B902 - what the test looks for
            errors.append(repr(exc))
    report['log_errors'] = errors
    topic = next(iter(node.out_publishers))
    rclpy.shutdown()
    node._publish(topic, b'\x00\x01\x00\x00')  # after Ctrl-C: must not raise, is counted
    report['after_shutdown'] = node.pipeline.snapshot()['dropped']
    node.close()
    node.destroy_node()
    with open(out_path, 'w') as f:
        json.dump(report, f)


if __name__ == '__main__':
    main(*sys.argv[1:])
