"""`gep bag ...`: inspect bags and export their events."""

import json
from pathlib import Path
import sys

import numpy as np

from . import UsageError
from ..bag import BagReader
from ..wire.cdr import WireError
from ..wire.events import concat_events, TRIGGER_DTYPE
from ..wire.stream import CLOCKS, EventStream

NS = 1e9


def register(sub):
    bag = sub.add_parser('bag', help='inspect bags and export events')
    cmds = bag.add_subparsers(dest='command', metavar='COMMAND', required=True)

    info = cmds.add_parser('info', help='topics, counts, duration, events and event rates')
    info.add_argument('bag', type=Path, help='.bag file, .db3/.mcap file or rosbag2 folder')
    info.add_argument('--json', action='store_true', help='print JSON instead of a table')
    info.set_defaults(func=cmd_info)

    events = cmds.add_parser('events', help='decode every event of a topic into an .npz')
    events.add_argument('bag', type=Path, help='.bag file, .db3/.mcap file or rosbag2 folder')
    events.add_argument('--topic', help='event topic (default: the only event topic)')
    events.add_argument('--time', choices=CLOCKS, default='ros',
                        help='clock of the exported times (default: ros)')
    events.add_argument('--out', type=Path, required=True, help='output .npz file')
    events.set_defaults(func=cmd_events)


# Messages handed to EventStream.decode_batch at a time: small EVT3 packets decode several
# times faster in batches.
BATCH = 64


def decode_topic(reader, topic, clock='ros'):
    """Decode every message of an event topic; corrupt messages are skipped and counted.

    Returns (events, triggers, stream, sensor) with sensor = (width, height, encoding).
    """
    msgtype = reader.topics[topic].msgtype
    stream = EventStream(msgtype, clock)
    events, triggers, batch = [], [], []
    sensor = None

    def flush():
        nonlocal sensor
        for out in stream.decode_batch(batch):
            if isinstance(out, WireError):
                continue  # counted by the stream
            events.append(out.events)
            if len(out.triggers):
                triggers.append(out.triggers)
            sensor = (out.width, out.height)
        batch.clear()

    for msg in reader.messages([topic]):
        if msg.error:
            flush()  # rejections are counted in message order
            stream.stats.reject(msg.error[:120])
            continue
        batch.append(msg.data)
        if len(batch) == BATCH:
            flush()
    flush()
    trig = np.concatenate(triggers) if triggers else np.empty(0, TRIGGER_DTYPE)
    return concat_events(events), trig, stream, sensor


def event_summary(events, triggers, stream, sensor):
    """Statistics of one decoded event topic, as a JSON-ready dict."""
    n = len(events)
    on = int(np.count_nonzero(events['p'])) if n else 0
    span = int(events['t'].max() - events['t'].min()) if n > 1 else 0
    summary = {
        'events': n, 'on': on, 'off': n - on,
        'triggers': len(triggers),
        'first_t_ns': int(events['t'].min()) if n else None,
        'last_t_ns': int(events['t'].max()) if n else None,
        'span_s': span / NS,
        'rate_ev_s': n / (span / NS) if span else 0.0,
        'width': sensor[0] if sensor else None,
        'height': sensor[1] if sensor else None,
        'x_range': [int(events['x'].min()), int(events['x'].max())] if n else None,
        'y_range': [int(events['y'].min()), int(events['y'].max())] if n else None,
        'messages': stream.stats.messages,
        'rejected': sum(stream.stats.rejected.values()),
        'rejected_reasons': stream.stats.rejected,
    }
    return summary


def _warn_rejected(topic, summary):
    if summary['rejected']:
        first = next(iter(summary['rejected_reasons']))
        print(f'gep: warning: {topic}: skipped {summary["rejected"]} corrupt message(s) '
              f'(first: {first})', file=sys.stderr)


def bag_info(path):
    """Everything `gep bag info` reports, as a dict."""
    with BagReader(path) as reader:
        info = {
            'bag': str(path),
            'format': 'ROS 1' if reader.is_ros1 else 'ROS 2',
            'messages': reader.message_count,
            'duration_s': reader.duration_ns / NS,
            'start_ns': reader.start_ns if reader.message_count else None,
            'topics': {t: {'type': i.msgtype, 'messages': i.count}
                       for t, i in reader.topics.items()},
            'event_topics': {},
        }
        for topic in reader.event_topics():
            events, triggers, stream, sensor = decode_topic(reader, topic)
            info['event_topics'][topic] = event_summary(events, triggers, stream, sensor)
    return info


def cmd_info(args):
    info = bag_info(args.bag)
    for topic, summary in info['event_topics'].items():
        _warn_rejected(topic, summary)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f'bag:       {info["bag"]} ({info["format"]})')
    print(f'duration:  {info["duration_s"]:.3f} s')
    print(f'messages:  {info["messages"]}')
    width = max([len(t) for t in info['topics']] + [5])
    print(f'\n{"topic":<{width}}  {"type":<36}  messages')
    for topic, t in info['topics'].items():
        print(f'{topic:<{width}}  {t["type"]:<36}  {t["messages"]:>8}')
    for topic, s in info['event_topics'].items():
        print(f'\nevents on {topic}:')
        print(format_summary(s))
    return 0


def format_summary(s):
    lines = [f'  events     {s["events"]:,} ({s["on"]:,} on, {s["off"]:,} off)']
    if s['events']:
        lines.append(f'  span       {s["span_s"]:.3f} s, {s["rate_ev_s"] / 1e6:.3f} Mev/s')
        lines.append(f'  sensor     {s["width"]}x{s["height"]}, x {s["x_range"]}, '
                     f'y {s["y_range"]}')
    if s['triggers']:
        lines.append(f'  triggers   {s["triggers"]:,}')
    lines.append(f'  messages   {s["messages"]:,} decoded, {s["rejected"]} rejected')
    return '\n'.join(lines)


def cmd_events(args):
    with BagReader(args.bag) as reader:
        topics = reader.event_topics()
        if args.topic is None:
            if len(topics) != 1:
                raise UsageError(f'{args.bag}: {len(topics)} event topics '
                                 f'({", ".join(topics) or "none"}); choose one with --topic')
            topic = topics[0]
        elif args.topic not in reader.topics:
            raise UsageError(f'{args.bag}: no topic {args.topic} '
                             f'(event topics: {", ".join(topics) or "none"})')
        elif args.topic not in topics:
            raise UsageError(f'{args.bag}: topic {args.topic} has type '
                             f'{reader.topics[args.topic].msgtype}, not an event type')
        else:
            topic = args.topic
        events, triggers, stream, sensor = decode_topic(reader, topic, args.time)
    arrays = {'t': events['t'], 'x': events['x'], 'y': events['y'], 'p': events['p']}
    if stream.msgtype.startswith('event_camera_msgs/'):
        arrays.update(trigger_t=triggers['t'], trigger_p=triggers['p'],
                      trigger_id=triggers['id'])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    summary = event_summary(events, triggers, stream, sensor)
    _warn_rejected(topic, summary)
    print(f'{topic} -> {args.out} (time: {args.time})')
    print(format_summary(summary))
    return 0
