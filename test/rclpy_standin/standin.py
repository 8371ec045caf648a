"""Test controls of the rclpy stand-in (not part of rclpy's API).

The stand-in in this folder models the part of rclpy, and of the message packages, that
gep_ros.perception_node uses, from rclpy's documented signatures (Humble to Jazzy). Tests
put this folder on sys.path inside a fixture, drive the node through the objects it created
(`Subscription.deliver`, `Timer.fire`, `Publisher.sent`) and set the knobs below.
"""

# Called with the node once per executor turn of rclpy.spin; it may raise KeyboardInterrupt
# (Ctrl-C on Humble) or call rclpy.shutdown() (Ctrl-C on Jazzy: spin then raises
# ExternalShutdownException). None: spin fires due timers until rclpy is shut down.
spin_handler = None
# False models an rclpy whose Publisher.publish refuses bytes with a TypeError.
publish_accepts_bytes = True
# Every log call: (severity name, logger name, message).
log_records = []


def reset():
    global spin_handler, publish_accepts_bytes
    spin_handler = None
    publish_accepts_bytes = True
    log_records.clear()
