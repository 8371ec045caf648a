"""Play serialized messages over real DDS at their recorded pace and record what comes back.

    python harness.py PLAN.pkl RESULT.pkl

Runs under a sourced ROS 2 (real rclpy), in its own process. PLAN is a pickle the test
wrote (never anything else):
    publish: [(topic, 'pkg/msg/Type', offset_s, cdr_bytes, clock_ns or None)], in order
    record: {topic: 'pkg/msg/Type'} recorded raw; /diagnostics is always recorded, decoded
    expect: {topic: count}; the harness stops once every count is reached
    timeout: seconds to wait for the node's subscriptions
    output_timeout: seconds to wait for the expected outputs after playing (default 30)
    wait_for: the published topics whose subscriber to wait for (default: all)
    publishers_qos_depth: history depth of the players (reliable)
Before playing it waits until the node subscribes to every published topic and publishes
every recorded one. RESULT gets {topic: [(receive_wall_ns, bytes)]}, 'diagnostics': [dicts],
and 'played' (messages published); exit status 0 when every expected count was reached,
3 when the node never came up, 4 when outputs were missing at the end.
"""

import importlib
import pickle
import sys
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy


def msg_class(msgtype):
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def diagnostic(msg):
    stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
    return [{'name': s.name, 'level': int.from_bytes(s.level, 'little')
             if isinstance(s.level, bytes) else int(s.level), 'message': s.message,
             'hardware_id': s.hardware_id, 'stamp_ns': stamp,
             'values': {kv.key: kv.value for kv in s.values}} for s in msg.status]


def main(plan_path, result_path):
    with open(plan_path, 'rb') as f:
        plan = pickle.load(f)
    rclpy.init()
    node = rclpy.create_node('gep_test_harness')
    received = {topic: [] for topic in plan['record']}
    diagnostics = []
    lock = threading.Lock()

    def keep(topic, data):
        with lock:
            received[topic].append((time.time_ns(), bytes(data)))

    reliable = QoSProfile(depth=plan.get('publishers_qos_depth', 1000),
                          reliability=ReliabilityPolicy.RELIABLE)
    subs = [node.create_subscription(msg_class(t), topic, lambda d, topic=topic: keep(topic, d),
                                     QoSProfile(depth=1000), raw=True)
            for topic, t in plan['record'].items()]
    subs.append(node.create_subscription(
        msg_class('diagnostic_msgs/msg/DiagnosticArray'), '/diagnostics',
        lambda m: diagnostics.extend(diagnostic(m)), 100))
    topics = {topic: msgtype for topic, msgtype, *_ in plan['publish']}
    pubs = {topic: node.create_publisher(msg_class(t), topic, reliable)
            for topic, t in topics.items()}
    clock = None
    if any(item[4] is not None for item in plan['publish']):
        clock = node.create_publisher(msg_class('rosgraph_msgs/msg/Clock'), '/clock', reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    spinner = threading.Thread(target=spin)
    spinner.start()

    result = {'received': received, 'diagnostics': diagnostics, 'played': 0}
    status = 0
    waited = [pubs[t] for t in plan.get('wait_for', pubs)]
    up = wait_until(lambda: all(p.get_subscription_count() for p in waited)
                    and all(node.count_publishers(t) for t in plan['record']), plan['timeout'])
    if not up:
        status = 3
    else:
        time.sleep(0.5)  # let the node's writers match our readers too
        start = time.monotonic()
        for topic, _, offset, data, clock_ns in plan['publish']:
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if clock_ns is not None:
                stamp = msg_class('rosgraph_msgs/msg/Clock')()
                stamp.clock.sec, stamp.clock.nanosec = divmod(clock_ns, 10**9)
                clock.publish(stamp)
            pubs[topic].publish(data)
            result['played'] += 1

        def complete():
            with lock:
                return all(len(received[t]) >= n for t, n in plan['expect'].items())
        if not wait_until(complete, plan.get('output_timeout', 30)):
            status = 4
            with lock:
                print('missing outputs:', {t: f'{len(received[t])} of {n}'
                                           for t, n in plan['expect'].items()}, flush=True)
                if diagnostics:
                    print('last diagnostics:', diagnostics[-1], flush=True)
        time.sleep(plan.get('linger', 1.5))  # a last diagnostics tick, and any extra output
    # The spin thread leaves rclpy before the executor and the context go: one still
    # waiting inside it at exit aborts the process ('terminate called without an active
    # exception').
    stop.set()
    spinner.join()
    executor.shutdown()
    with lock:
        with open(result_path, 'wb') as f:
            pickle.dump(result, f)
    print('harness: result written', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    print('harness: shut down', flush=True)
    return status


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
