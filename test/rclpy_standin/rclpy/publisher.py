"""rclpy.publisher.Publisher: publish(msg: MsgType | bytes), recorded in `sent`."""

import standin


class InvalidHandle(Exception):
    """Using an entity after it was destroyed."""


class Publisher:

    def __init__(self, msg_type, topic, qos_profile, context):
        self.msg_type = msg_type
        self.topic = topic
        self.qos_profile = qos_profile
        self.context = context
        self.destroyed = False
        self.sent = []  # stand-in: every message published, bytes or message objects
        self.refused = 0  # stand-in: publish calls that raised TypeError

    @property
    def topic_name(self):
        return self.topic

    def publish(self, msg):
        if self.destroyed:
            raise InvalidHandle(f'publisher on {self.topic} was destroyed')
        if not self.context.ok():
            raise RuntimeError(f'publisher on {self.topic}: the context is invalid')
        if isinstance(msg, self.msg_type) or (isinstance(msg, bytes)
                                              and standin.publish_accepts_bytes):
            self.sent.append(msg)
            return
        self.refused += 1
        raise TypeError(f'Expected {self.msg_type}, got {type(msg)}')

    def destroy(self):
        self.destroyed = True
