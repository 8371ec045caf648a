"""rclpy.subscription.Subscription; `deliver` (stand-in) hands it one incoming message."""

import inspect
import time

from rclpy.serialization import deserialize_message


def _takes_info(callback):
    """Tell, as rclpy (Iron and later) does, whether the callback also takes a MessageInfo."""
    for args, with_info in (((object(),), False), ((object(), object()), True)):
        try:
            inspect.signature(callback).bind(*args)
            return with_info
        except TypeError:
            pass
    raise RuntimeError('Subscription.__init__(): callback should be either be callable with one '
                       'argument(to get only the message) or two (to get message and message '
                       'info)')


class Subscription:

    def __init__(self, msg_type, topic, callback, qos_profile, raw):
        self.msg_type = msg_type
        self.topic = topic
        self.callback = callback
        self.with_info = _takes_info(callback)
        self.qos_profile = qos_profile
        self.raw = raw
        self.destroyed = False

    @property
    def topic_name(self):
        return self.topic

    def deliver(self, data):
        """Call the callback as the executor would with serialized `data` off the wire.

        raw=True: the callback gets the bytes as they are. Otherwise they are deserialized
        into msg_type first, as rmw does.
        """
        if self.destroyed:
            raise RuntimeError(f'subscription on {self.topic} was destroyed')
        if not isinstance(data, bytes):
            raise TypeError(f'serialized data must be bytes, got {type(data).__name__}')
        msg = data if self.raw else deserialize_message(data, self.msg_type)
        if self.with_info:
            now = time.time_ns()
            self.callback(msg, {'source_timestamp': now, 'received_timestamp': now})
        else:
            self.callback(msg)

    def destroy(self):
        self.destroyed = True
