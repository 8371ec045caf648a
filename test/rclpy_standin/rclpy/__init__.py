"""Stand-in of rclpy's top level: init, shutdown, try_shutdown, ok, spin (see standin.py)."""

import fnmatch
import sys
import time as _time  # not `time`: the rclpy.time submodule takes that name

import standin
import yaml


class Context:
    """The default context: initialised or not, and the parameter overrides of its args."""

    def __init__(self):
        self._ok = False
        self.param_files = []  # [{node key: {dotted name: value}}], in order
        self.params = {}  # dotted name -> value, from -p

    def init(self, args=None):
        if self._ok:
            raise RuntimeError('Context.init() must only be called once')
        self.param_files, self.params = [], {}
        _parse_ros_args(self, list(sys.argv if args is None else args))
        self._ok = True

    def ok(self):
        return self._ok

    def shutdown(self):
        if not self._ok:
            raise RuntimeError('failed to shutdown: rcl_shutdown already called on the given '
                               'context')
        self._ok = False

    def try_shutdown(self):
        if self._ok:
            self._ok = False

    def overrides_for(self, fqn):
        """Return {name: value} from the parameter files that match `fqn`, then -p."""
        out = {}
        for sections in self.param_files:
            for key, values in sections.items():
                pattern = key if key.startswith('/') else '/' + key
                if fnmatch.fnmatchcase(fqn, pattern.replace('/**', '*')):
                    out.update(values)
        out.update(self.params)
        return out


_default_context = Context()


def get_default_context():
    return _default_context


def _flatten(tree, prefix=''):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def _parse_ros_args(context, args):
    """Parse what follows --ros-args up to '--': -p NAME:=VALUE and --params-file PATH."""
    ros = False
    items = iter(args)
    for arg in items:
        if arg == '--ros-args':
            ros = True
        elif arg == '--':
            ros = False
        elif ros and arg in ('-p', '--param'):
            name, sep, value = next(items, '').partition(':=')
            if not sep:
                raise RuntimeError(f"Couldn't parse parameter override rule: {name}")
            context.params[name] = yaml.safe_load(value)  # rcl reads the value as YAML
        elif ros and arg == '--params-file':
            with open(next(items)) as f:
                doc = yaml.safe_load(f) or {}
            context.param_files.append({key: _flatten(section.get('ros__parameters') or {})
                                        for key, section in doc.items()})
        elif ros:
            raise RuntimeError(f'the rclpy stand-in does not model the ROS argument {arg!r}')


def init(*, args=None, context=None, domain_id=None, signal_handler_options=None):
    (context or _default_context).init(args)


def ok(*, context=None):
    return (context or _default_context).ok()


def shutdown(*, context=None, uninstall_handlers=None):
    (context or _default_context).shutdown()


def try_shutdown(*, context=None):
    (context or _default_context).try_shutdown()


def spin(node, executor=None):
    """Run executor turns until rclpy is shut down (see standin.spin_handler)."""
    from rclpy.executors import ExternalShutdownException
    context = node.context
    while True:
        if not context.ok():
            raise ExternalShutdownException()
        if standin.spin_handler is not None:
            standin.spin_handler(node)
        else:
            for timer in list(node.timers):
                timer.fire_if_due()
            _time.sleep(0.01)
