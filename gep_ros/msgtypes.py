"""Message definitions for rosbags: the ROS 2 standard types plus the event camera packages.

Bags recorded without embedded definitions (rosbag2 before Iron, sqlite3 storage) and the
reference codec tests need dvs_msgs and event_camera_msgs, which no rosbags store ships.
The text below is the packages' own .msg content (ROS 2 layout). rosbags is imported only
when a typestore is asked for: the node, which uses the type names alone, runs without it.
"""

from functools import lru_cache

EVENT_ARRAY = 'dvs_msgs/msg/EventArray'
EVENT_PACKET = 'event_camera_msgs/msg/EventPacket'
EVENT_TYPES = (EVENT_ARRAY, EVENT_PACKET)

DEFINITIONS = {
    'dvs_msgs/msg/Event': """
uint16 x
uint16 y
builtin_interfaces/Time ts
bool polarity
""",
    EVENT_ARRAY: """
std_msgs/Header header
uint32 height
uint32 width
dvs_msgs/Event[] events
""",
    EVENT_PACKET: """
std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
""",
}


def register_event_types(store):
    """Add the event camera message types that `store` lacks; return the store."""
    from rosbags.typesys import get_types_from_msg
    types = {}
    for name, text in DEFINITIONS.items():
        if name not in store.fielddefs:
            types.update(get_types_from_msg(text, name))
    if types:
        store.register(types)
    return store


@lru_cache(maxsize=1)
def typestore():
    """Return the shared rosbags Typestore: ROS 2 Humble's types plus the event camera types."""
    from rosbags.typesys import get_typestore, Stores
    return register_event_types(get_typestore(Stores.ROS2_HUMBLE))
