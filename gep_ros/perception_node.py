"""The perception node: the rclpy shell around gep_ros.pipeline.Pipeline.

Everything that decides anything lives in the pipeline, which runs and is tested without
ROS. This module only moves bytes: it declares the parameters of gep_ros.params (read once
at start, so they are read-only), subscribes with `raw=True` to the topics the pipeline
wants, publishes the serialized outputs it returns, and reports its statistics on
/diagnostics once a second.
"""

from functools import partial
import importlib
import logging
from pathlib import Path
import sys
import tempfile
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from gep_model.artifact import load_artifact, save_artifact
from gep_model.errors import ArtifactError
from gep_model.runtime import choose_backend, make_runtime

from .memory import retain_freed_memory
from .params import CAMERA_PARAMS, make_params, NODE_NAME, ParamError, PARAMS
from .pipeline import Pipeline
from .stats import STAGES

DIAGNOSTIC_NAME = 'gep_ros: perception'
LOGGERS = ('gep_ros', 'gep_model')  # Python loggers whose records go to the ROS log
RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
               'reliable': ReliabilityPolicy.RELIABLE}


def qos_profiles(params):
    """Return the QoS of the subscriptions and of the output publishers, from qos.*.

    Publishers are always reliable: a reliable publisher serves best-effort and reliable
    subscribers (rviz, ros2 bag record) alike, a best-effort one only the former.
    """
    depth = params['qos.depth']
    return (QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                       reliability=RELIABILITY[params['qos.reliability']]),
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                       reliability=ReliabilityPolicy.RELIABLE))


def msg_class(msgtype):
    """Return the message class of 'pkg/msg/Name', importing only the package it needs."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


class _ToRosLog(logging.Handler):
    """Forward the pipeline's Python log records (rejections, resets) to the node's logger."""

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self.ros = logger

    def emit(self, record):
        level = 'error' if record.levelno >= logging.ERROR else \
            'warning' if record.levelno >= logging.WARNING else 'info'
        getattr(self.ros, level)(record.getMessage())


class PerceptionNode(Node):
    """Parameters, QoS, raw subscriptions and publishers, diagnostics; see the module doc."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.random_weights = None  # TemporaryDirectory of the smoke-test artifact
        self.pipeline = None
        self.log_handler = _ToRosLog(self.get_logger())
        self.log_levels = {name: logging.getLogger(name).level for name in LOGGERS}
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self.log_handler)
            logging.getLogger(name).setLevel(self.log_levels[name] or logging.INFO)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        self.params = self._declare_parameters()
        qos_in, qos_out = qos_profiles(self.params)
        runtime = self._runtime()
        self.digest = runtime.artifact.digest
        self.out_publishers = {}
        self.out_classes = {}
        self.raw_publish = None  # decided at the first publish: does publish() take bytes?
        try:
            self.pipeline = Pipeline(self.params, runtime, self._publish)
        except ValueError as exc:  # the same topic configured twice
            raise ParamError(str(exc)) from None
        for topic, msgtype in self.pipeline.output_topics().items():
            self.out_classes[topic] = self._class(msgtype, 'outputs')
            self.out_publishers[topic] = self.create_publisher(self.out_classes[topic], topic,
                                                               qos_out)
        self.inputs = [self.create_subscription(self._class(msgtype, topic), topic,
                                                partial(self._on_message, topic), qos_in,
                                                raw=True)
                       for topic, msgtype in self.pipeline.subscriptions()]
        self.diag_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # At the last tick: time, inputs by topic, drops, rejections, the worker's error.
        self.diag_prev = (time.monotonic(), {}, 0, 0, None)
        # Diagnostics run on the steady clock: they report the node, not the (sim) time.
        self.diag_timer = self.create_timer(1.0, self._diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f'ready: {runtime.name} backend, weights {self.digest[:12]}, subscribed to '
            f'{", ".join(t for t, _ in self.pipeline.subscriptions())}, publishing '
            f'{", ".join(self.out_publishers)}')

    # -- start --------------------------------------------------------------------------
    def _declare_parameters(self):
        """Declare PARAMS and every camera's CAMERA_PARAMS; return PerceptionParams."""
        def declare(name, default, description):
            descriptor = ParameterDescriptor(description=description, read_only=True)
            try:
                return self.declare_parameter(name, default, descriptor).value
            except InvalidParameterTypeException as exc:
                raise ParamError(f'{name}: {exc}') from None

        values = {'cameras': declare('cameras', *PARAMS['cameras'])}
        for name, (default, description) in PARAMS.items():
            if name != 'cameras':
                values[name] = declare(name, default, description)
        for camera in values['cameras']:
            for key, (default, description) in CAMERA_PARAMS.items():
                values[f'{camera}.{key}'] = declare(f'{camera}.{key}', default,
                                                    f'camera {camera}: {description}')
        values['cameras'] = list(values['cameras'])
        return make_params(values)

    def _runtime(self):
        """Load the artifact (or make a random gep_tiny) and build the chosen runtime."""
        folder = self.params['weights']
        if not folder:
            folder = self._random_artifact()
        try:
            artifact = load_artifact(folder)
        except ArtifactError as exc:
            raise ParamError(f'weights: {exc}') from None
        try:
            backend = choose_backend(self.params['backend'])
        except (ValueError, RuntimeError) as exc:
            raise ParamError(f'backend: {exc}') from None
        return make_runtime(artifact, backend, self.params['max_batch'],
                            self.params['precision'], self.params['engine_cache'] or None)

    def _random_artifact(self):
        import torch

        from gep_model.model import GEPModel
        from gep_model.registry import variant_config
        self.random_weights = tempfile.TemporaryDirectory(prefix='gep_ros_random_')
        folder = Path(self.random_weights.name) / 'gep_tiny'
        torch.manual_seed(0)
        save_artifact(GEPModel(variant_config('gep_tiny')), folder,
                      provenance={'stages': ['random init'], 'seed': 0})
        self.get_logger().warning('weights is empty: running a randomly initialised gep_tiny, '
                                  'its outputs are meaningless (set weights to an artifact)')
        return folder

    @staticmethod
    def _class(msgtype, where):
        try:
            return msg_class(msgtype)
        except (ImportError, AttributeError) as exc:
            raise ParamError(f'{where}: {msgtype} needs the ROS 2 package '
                             f'{msgtype.split("/")[0]} ({exc})') from None

    # -- data ---------------------------------------------------------------------------
    def _on_message(self, topic, data):
        """Feed one serialized message; a subscription callback must never raise."""
        try:
            self.pipeline.feed(topic, data, self.get_clock().now().nanoseconds)
        except Exception as exc:  # noqa: B902 - a bug must not stop the other topics
            self.pipeline.stats.count('rejected', f'{topic}: {type(exc).__name__}')
            self.get_logger().error(f'{topic}: message failed in the pipeline: {exc!r}')

    def _publish(self, topic, data):
        """Publish output bytes; where rclpy refuses bytes, deserialize (decided once)."""
        publisher = self.out_publishers[topic]
        try:
            if self.raw_publish is not False:
                try:
                    publisher.publish(data)
                    self.raw_publish = True
                    return
                except TypeError:
                    if self.raw_publish:
                        raise
                    self.raw_publish = False
                    self.get_logger().info('this rclpy does not publish bytes: outputs are '
                                           'deserialized into messages first (one copy)')
            publisher.publish(deserialize_message(data, self.out_classes[topic]))
        except Exception as exc:  # noqa: B902 - runs on the inference worker, which goes on
            if rclpy.ok():
                self.pipeline.stats.count('dropped', f'{topic}: publish failed')
                self.get_logger().error(f'{topic}: publish failed: {exc!r}')

    # -- diagnostics --------------------------------------------------------------------
    def _diagnostics(self):
        snap = self.pipeline.snapshot()
        now = time.monotonic()
        then, inputs, dropped, rejected, error = self.diag_prev
        span = max(now - then, 1e-9)
        values = [('backend', self.pipeline.runtime.name)]
        for topic, _ in self.pipeline.subscriptions():
            n = snap['inputs'].get(topic, 0)
            values += [(f'input {topic} rate_hz', f'{(n - inputs.get(topic, 0)) / span:.1f}'),
                       (f'input {topic} messages', n)]
        values += [(f'events {cam}', n) for cam, n in sorted(snap['events'].items())]
        values += [('windows', snap['windows']), ('queue', snap['queue'])]
        values += [(f'output {topic} messages', n) for topic, n in sorted(snap['outputs'].items())]
        for counter in ('dropped', 'rejected', 'resets'):
            values += [(f'{counter} {key}', n) for key, n in sorted(snap[counter].items())]
        for stage in STAGES:
            summary = snap['latency_ms'][stage]
            values += [(f'latency_ms {stage} {q}', '-' if summary[q] is None else
                        f'{summary[q]:.2f}') for q in ('p50', 'p95', 'max')]
        n_dropped, n_rejected = sum(snap['dropped'].values()), sum(snap['rejected'].values())
        new_error = self.pipeline.error if self.pipeline.error is not error else None
        status = DiagnosticStatus(name=DIAGNOSTIC_NAME, hardware_id=self.digest,
                                  level=DiagnosticStatus.OK, message='running')
        if new_error is not None:
            status.level, status.message = DiagnosticStatus.ERROR, f'inference failed: {new_error}'
        elif n_dropped > dropped or n_rejected > rejected:
            status.level = DiagnosticStatus.WARN
            status.message = (f'{n_dropped - dropped} dropped, {n_rejected - rejected} rejected '
                              f'in the last {span:.1f} s')
        elif not snap['inputs']:
            status.message = 'waiting for input'
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values]
        self.diag_prev = (now, snap['inputs'], n_dropped, n_rejected, self.pipeline.error)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_publisher.publish(array)

    # -- end ----------------------------------------------------------------------------
    def close(self):
        """Stop the inference worker (it finishes its queue) and drop the temporary weights."""
        if self.pipeline is not None:
            self.pipeline.close()
        if self.log_handler is not None:
            for name, level in self.log_levels.items():
                logging.getLogger(name).removeHandler(self.log_handler)
                logging.getLogger(name).setLevel(level)
            self.log_handler = None
        if self.random_weights is not None:
            self.random_weights.cleanup()
            self.random_weights = None


def main(args=None):
    """Run the node until Ctrl-C; return the exit status (1 for a bad parameter)."""
    retain_freed_memory()
    rclpy.init(args=args)
    node = None
    try:
        node = PerceptionNode()
        rclpy.spin(node)
    except ParamError as exc:
        get_logger(NODE_NAME).error(f'cannot start: {exc}')
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
