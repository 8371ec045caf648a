"""The perception node: the rclpy shell around gep_ros.pipeline.Pipeline.

Everything that decides anything lives in the pipeline, which runs and is tested without
ROS. This module only moves bytes: it declares the parameters of gep_ros.params (read once
at start, so they are read-only), subscribes with `raw=True` to the topics the pipeline
wants, publishes the serialized outputs it returns, and reports its statistics on
/diagnostics once a second. Its `~/flush` service (std_srvs/Trigger) finishes the input's
last windows: the end of a replayed bag.
"""

from copy import copy
from functools import partial
import importlib
import logging
import os
from pathlib import Path
import sys
import tempfile
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from rclpy.qos_overriding_options import QoSOverridingOptions
from std_srvs.srv import Trigger

from gep_model.artifact import load_artifact, save_artifact
from gep_model.errors import ArtifactError
from gep_model.runtime import choose_backend, cpu_threads, make_runtime

from .memory import retain_freed_memory
from .params import describe, did_you_mean, make_params, NODE_NAME, ParamError, PARAMS, schema
from .pipeline import Pipeline
from .stats import STAGES

DIAGNOSTIC_NAME = 'gep_ros: perception'
LOGGERS = ('gep_ros', 'gep_model')  # Python loggers whose records go to the ROS log
# Inputs take sensor-data QoS (best effort, the last 5), outputs are reliable (they serve
# reliable subscribers such as rviz and ros2 bag too). Each entity's history, depth and
# reliability can be overridden per topic with qos_overrides.<topic>.<publisher|subscription>.*
# parameters, the ROS 2 way.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
QOS_PARAMETERS = 'qos_overrides.'  # the prefix of the parameters QOS_OVERRIDES declares
# How long ~/flush waits for the last windows; it holds the node's executor meanwhile.
FLUSH_TIMEOUT_S = 30.0


def input_qos():
    # A new profile for each entity: rclpy applies QoS overrides to the profile it is given.
    return copy(qos_profile_sensor_data)


def output_qos():
    return QoSProfile(depth=10)


def msg_class(msgtype):
    """Return the message class of 'pkg/msg/Name', importing only the package it needs."""
    package, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


def descriptor(param):
    """Return the read-only ParameterDescriptor of a gep_ros.params.Param, with its range."""
    out = ParameterDescriptor(description=describe(param), read_only=True)
    if param.choices:
        out.additional_constraints = f'one of {", ".join(param.choices)}'
    if param.low is not None and isinstance(param.default, int):
        out.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high),
                                          step=0)]
    elif param.low is not None:
        out.floating_point_range = [FloatingPointRange(from_value=float(param.low),
                                                       to_value=float(param.high), step=0.0)]
    return out


class _ToRosLog(logging.Handler):
    """Forward the pipeline's Python log records (rejections, resets) to the node's logger.

    rclpy fixes one severity per call site (it raises if a line logs at another), so each
    severity has its own line here.
    """

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self.ros = logger

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.levelno >= logging.ERROR:
                self.ros.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros.warning(text)
            else:
                self.ros.info(text)
        except Exception:  # noqa: B902 - logging must never stop the thread that logs
            self.handleError(record)


class PerceptionNode(Node):
    """Parameters, QoS, raw subscriptions and publishers, diagnostics; see the module doc."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.random_weights = None  # TemporaryDirectory of the smoke-test artifact
        self.pipeline = None
        self.started = False
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
        # Before the model loads (an engine build can take minutes); QoS overrides are
        # declared with their entities, so they are checked once those exist.
        self._refuse_unknown_parameters(QOS_PARAMETERS)
        runtime = self._runtime()
        self.digest = runtime.artifact.digest
        self.hardware_id = runtime.device_name()
        try:
            self.pipeline = Pipeline(self.params, runtime, self._publish,
                                     resolve=self.resolve_topic_name)
        except ValueError as exc:  # a topic used twice
            raise ParamError(str(exc)) from None
        self.out_publishers = {
            topic: self.create_publisher(self._class(msgtype, 'outputs'), topic, output_qos(),
                                         qos_overriding_options=QOS_OVERRIDES)
            for topic, msgtype in self.pipeline.output_topics().items()}
        self.inputs = [self.create_subscription(self._class(msgtype, topic), topic,
                                                partial(self._on_message, topic), input_qos(),
                                                raw=True, qos_overriding_options=QOS_OVERRIDES)
                       for topic, msgtype in self.pipeline.subscriptions()]
        self.diag_publisher = self.create_publisher(
            DiagnosticArray, '/diagnostics', output_qos(), qos_overriding_options=QOS_OVERRIDES)
        self._refuse_unknown_parameters()  # after the entities declared their QoS overrides
        # At the last tick: time, inputs by topic, drops, rejections, the worker's error.
        self.diag_prev = (time.monotonic(), {}, 0, 0, None)
        # Diagnostics run on the steady clock: they report the node, not the (sim) time.
        self.diag_timer = self.create_timer(1.0, self._diagnostics,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.flush_service = self.create_service(Trigger, '~/flush', self._flush)
        self.started = True
        clock = 'sim time (/clock)' if self.get_parameter('use_sim_time').value else 'ROS time'
        self.get_logger().info(
            f'ready: {runtime.name} backend on {self.hardware_id}, weights {self.digest[:12]}, '
            f'{clock}, subscribed to {", ".join(t for t, _ in self.pipeline.subscriptions())}, '
            f'publishing {", ".join(self.out_publishers)}')

    # -- start --------------------------------------------------------------------------
    def _declare_parameters(self):
        """Declare PARAMS and every camera's CAMERA_PARAMS; return PerceptionParams."""
        def declare(name, param):
            try:
                return self.declare_parameter(name, param.default, descriptor(param)).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                raise ParamError(f'{name}: {exc}') from None

        values = {'cameras': list(declare('cameras', PARAMS['cameras']))}
        values.update({name: declare(name, param)
                       for name, param in schema(values['cameras']).items()
                       if name != 'cameras'})
        return make_params(values)

    def _refuse_unknown_parameters(self, except_prefix=None):
        """Refuse a parameter given to this node that it does not declare.

        From a file or the command line, it is a misspelling or a leftover: running without
        it would hide that. Names starting with `except_prefix` are not checked (yet).
        """
        # rclpy keeps the overrides meant for this node here (Humble to Jazzy and later).
        unknown = sorted(name for name in set(self._parameter_overrides) - set(self._parameters)
                         if not (except_prefix and name.startswith(except_prefix)))
        if unknown:
            raise ParamError(f'unknown parameter {unknown[0]}'
                             f'{did_you_mean(unknown[0], self._parameters)}'
                             + (f' (and {len(unknown) - 1} more)' if len(unknown) > 1 else ''))

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
                            self.params['precision'], self.params['engine_cache'] or None,
                            threads=cpu_threads(self.params['threads']))

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
            self.get_logger().error(f'{topic}: message failed in the pipeline: {exc}')

    def _publish(self, topic, data):
        """Publish output bytes (runs on the inference worker, which must go on)."""
        if not self.context.ok():  # Ctrl-C came: the context is gone, publish nothing
            self.pipeline.stats.count('dropped', 'shutdown')
            return
        try:
            self.out_publishers[topic].publish(data)
        except Exception as exc:  # noqa: B902 - e.g. the context shut down just now
            if self.context.ok():
                self.pipeline.stats.count('dropped', f'{topic}: publish failed')
                self.get_logger().error(f'{topic}: publish failed: {exc}')
            else:
                self.pipeline.stats.count('dropped', 'shutdown')

    def _flush(self, request, response):
        """~/flush: cut every frame still waiting for events, publish every queued window.

        For the end of an input (a replayed bag): nothing more will come, so nothing should
        wait. Answers once all is published, or after FLUSH_TIMEOUT_S (success false).
        """
        response.success = self.pipeline.flush(timeout=FLUSH_TIMEOUT_S)
        snap = self.pipeline.snapshot()
        response.message = (f'{snap["windows"]} windows, {sum(snap["outputs"].values())} '
                            f'outputs published, {snap["queue"]} windows waiting')
        if response.success:
            self.get_logger().info(f'flushed: {response.message}')
        else:
            self.get_logger().warning(f'flush timed out after {FLUSH_TIMEOUT_S:g} s: '
                                      f'{response.message}')
        return response

    # -- diagnostics --------------------------------------------------------------------
    def _diagnostics(self):
        snap = self.pipeline.snapshot()
        now = time.monotonic()
        then, inputs, dropped, rejected, error = self.diag_prev
        span = max(now - then, 1e-9)
        values = [('backend', self.pipeline.runtime.name), ('weights', self.digest)]
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
        status = DiagnosticStatus(name=DIAGNOSTIC_NAME, hardware_id=self.hardware_id,
                                  level=DiagnosticStatus.OK, message='running')
        if not self.pipeline.worker.is_alive():
            status.level, status.message = DiagnosticStatus.ERROR, 'inference worker stopped'
        elif new_error is not None:
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
    def _log_stop(self, snap):
        # After Ctrl-C the context is gone, and with it the node's /rosout publisher: a
        # logger of another name still writes to the console, without a rosout error.
        logger = self.get_logger() if self.context.ok() else get_logger(f'{NODE_NAME}.exit')
        logger.info(f'stopped: {snap["windows"]} windows, {sum(snap["outputs"].values())} '
                    f'outputs published, {snap["dropped"].get("shutdown", 0)} windows dropped '
                    'at shutdown')

    def close(self):
        """Stop the inference worker, drop (and count) what waits, say so; drop the weights.

        Runs after rclpy's context may already be shut down.
        """
        if self.pipeline is not None:
            self.pipeline.close(drop=True)
            if self.started:
                self._log_stop(self.pipeline.snapshot())
            self.pipeline = None
        if self.log_handler is not None:
            for name, level in self.log_levels.items():
                logging.getLogger(name).removeHandler(self.log_handler)
                logging.getLogger(name).setLevel(level)
            self.log_handler = None
        if self.random_weights is not None:
            self.random_weights.cleanup()
            self.random_weights = None


def main(args=None):
    """Run the node until Ctrl-C or SIGTERM, then end the process: 0, or 1 if it cannot start.

    Everything is closed and flushed when `run` returns; the interpreter's own teardown with
    torch and onnxruntime loaded would take another second (two on a busy robot), past what
    launch and the 2 s a robot's supervisor may allow. So the process ends at once.
    """
    code = run(args)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(args=None):
    """Run the node until Ctrl-C or SIGTERM; return the exit status (1: cannot start)."""
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
    main()
