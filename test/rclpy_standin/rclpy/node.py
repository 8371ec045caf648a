"""rclpy.node.Node: parameters, publishers, subscriptions, timers, logger, clock.

Parameter declaration follows rclpy: the type comes from the default (unless the
descriptor says dynamic_typing), an override from the command line, a parameter file or
`parameter_overrides` replaces the default, and an override of another type raises
InvalidParameterTypeException.
"""

from _standin_msgs import Message
from rcl_interfaces.msg import ParameterDescriptor

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import (InvalidParameterTypeException, NotInitializedException,
                              ParameterAlreadyDeclaredException, ParameterNotDeclaredException)
from rclpy.logging import get_logger
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.subscription import Subscription
from rclpy.timer import Timer


def _qos(qos_profile):
    if isinstance(qos_profile, QoSProfile):
        return qos_profile
    if isinstance(qos_profile, int) and not isinstance(qos_profile, bool):
        return QoSProfile(depth=qos_profile)
    raise TypeError(f'Expected QoSProfile or int, but received {type(qos_profile)!r}')


def _msg_type(msg_type):
    if not (isinstance(msg_type, type) and issubclass(msg_type, Message)):
        raise AttributeError(f'{msg_type!r} is not a message class (no type support)')
    return msg_type


class Node:

    def __init__(self, node_name, *, context=None, cli_args=None, namespace=None,
                 use_global_arguments=True, enable_rosout=True, start_parameter_services=True,
                 parameter_overrides=None, allow_undeclared_parameters=False,
                 automatically_declare_parameters_from_overrides=False):
        self.__context = context or rclpy.get_default_context()
        if not self.__context.ok():
            raise NotInitializedException('cannot create node')
        if cli_args or automatically_declare_parameters_from_overrides:
            raise NotImplementedError('the stand-in models neither cli_args nor automatic '
                                      'declaration')
        self.__name = node_name
        self.__namespace = '/' + (namespace or '').strip('/')
        fqn = self.__namespace.rstrip('/') + '/' + node_name
        self.__overrides = self.__context.overrides_for(fqn) if use_global_arguments else {}
        self.__overrides.update({p.name: p.value for p in parameter_overrides or []})
        self.__allow_undeclared = allow_undeclared_parameters
        self.__parameters = {}
        self.__descriptors = {}
        self.__publishers = []
        self.__subscriptions = []
        self.__timers = []
        self.__clock = Clock(clock_type=ClockType.ROS_TIME)
        self.__logger = get_logger(node_name)
        self.destroyed = False  # stand-in
        self.declare_parameter('use_sim_time', False)

    @property
    def context(self):
        return self.__context

    @property
    def publishers(self):
        return iter(self.__publishers)

    @property
    def subscriptions(self):
        return iter(self.__subscriptions)

    @property
    def timers(self):
        return iter(self.__timers)

    def get_name(self):
        return self.__name

    def get_namespace(self):
        return self.__namespace

    def get_logger(self):
        return self.__logger

    def get_clock(self):
        return self.__clock

    # -- parameters ---------------------------------------------------------------------
    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        if name in self.__parameters:
            raise ParameterAlreadyDeclaredException([name])
        descriptor = ParameterDescriptor() if descriptor is None else descriptor
        if not isinstance(descriptor, ParameterDescriptor):
            raise TypeError(f'{descriptor!r} is not a ParameterDescriptor')
        if not descriptor.dynamic_typing:
            descriptor.type = Parameter.Type.from_parameter_value(value).value
        if not ignore_override and name in self.__overrides:
            value = self.__overrides[name]
        parameter = Parameter(name, value=value)
        if not descriptor.dynamic_typing and parameter.type_.value != descriptor.type:
            raise InvalidParameterTypeException(parameter, Parameter.Type(descriptor.type).name)
        descriptor.name = name
        self.__parameters[name] = parameter
        self.__descriptors[name] = descriptor
        return parameter

    def has_parameter(self, name):
        return name in self.__parameters

    def get_parameter(self, name):
        if name in self.__parameters:
            return self.__parameters[name]
        if self.__allow_undeclared:
            return Parameter(name, Parameter.Type.NOT_SET, None)
        raise ParameterNotDeclaredException(name)

    def describe_parameter(self, name):
        if name not in self.__descriptors:
            raise ParameterNotDeclaredException(name)
        return self.__descriptors[name]

    # -- entities -----------------------------------------------------------------------
    def resolve_topic_name(self, topic):
        if topic.startswith('/'):
            return topic
        if topic.startswith('~'):
            return self.__namespace.rstrip('/') + '/' + self.__name + topic[1:]
        return self.__namespace.rstrip('/') + '/' + topic

    def _check_alive(self):
        if self.destroyed:
            raise RuntimeError(f'node {self.__name} was destroyed')

    def create_publisher(self, msg_type, topic, qos_profile, *, callback_group=None,
                         event_callbacks=None, qos_overriding_options=None,
                         publisher_class=Publisher):
        self._check_alive()
        publisher = publisher_class(_msg_type(msg_type), self.resolve_topic_name(topic),
                                    _qos(qos_profile), self.__context)
        self.__publishers.append(publisher)
        return publisher

    def create_subscription(self, msg_type, topic, callback, qos_profile, *,
                            callback_group=None, event_callbacks=None,
                            qos_overriding_options=None, raw=False):
        self._check_alive()
        if not callable(callback):
            raise TypeError(f'callback {callback!r} is not callable')
        subscription = Subscription(_msg_type(msg_type), self.resolve_topic_name(topic),
                                    callback, _qos(qos_profile), raw)
        self.__subscriptions.append(subscription)
        return subscription

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None):
        self._check_alive()
        timer = Timer(callback, int(float(timer_period_sec) * 1e9), clock or self.__clock)
        self.__timers.append(timer)
        return timer

    def destroy_node(self):
        for entity in self.__publishers + self.__subscriptions + self.__timers:
            entity.destroy()
        self.__publishers, self.__subscriptions, self.__timers = [], [], []
        self.destroyed = True
