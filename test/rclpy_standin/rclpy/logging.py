"""rclpy.logging.get_logger: rcutils' console format on stderr, also recorded."""  # noqa: A005

import sys
import time

import standin

SEVERITIES = ('DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')
KWARGS = {'once', 'throttle_duration_sec', 'throttle_time_source_type', 'skip_first'}


class RcutilsLogger:

    def __init__(self, name=''):
        self.name = name

    def get_child(self, name):
        return RcutilsLogger(f'{self.name}.{name}' if self.name else name)

    def log(self, message, severity, **kwargs):
        unknown = set(kwargs) - KWARGS
        if unknown:
            raise TypeError(f'unexpected keyword arguments {sorted(unknown)}')
        standin.log_records.append((severity, self.name, str(message)))
        if severity != 'DEBUG':
            print(f'[{severity}] [{time.time():.9f}] [{self.name}]: {message}', file=sys.stderr)
        return True

    def debug(self, message, **kwargs):
        return self.log(message, 'DEBUG', **kwargs)

    def info(self, message, **kwargs):
        return self.log(message, 'INFO', **kwargs)

    def warning(self, message, **kwargs):
        return self.log(message, 'WARN', **kwargs)

    warn = warning

    def error(self, message, **kwargs):
        return self.log(message, 'ERROR', **kwargs)

    def fatal(self, message, **kwargs):
        return self.log(message, 'FATAL', **kwargs)


def get_logger(name):
    return RcutilsLogger(name)
