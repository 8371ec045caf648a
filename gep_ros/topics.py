"""Finding a bag's topics by type, and reading ground-truth images: one rule for all tools.

Replay and training both need the camera's event topic, its frame topic, optionally its
camera_info topic, and ground truth: depth (a 32FC1 image in metres or 16UC1 in millimetres,
REP 118) and class labels (mono8). A topic given by name is checked; one left as None is
found by type: the only candidate, else the only one in the namespace of the camera's other
stream (/dvs/events beside /dvs/image_raw); otherwise the error names every candidate and
the option that chooses. Ground truth is recognised by name and by the encoding of its first
message. '' (or 'none') turns an optional topic off.
"""

from dataclasses import dataclass

import numpy as np

from .msgtypes import EVENT_TYPES
from .wire.cdr import WireError
from .wire.image import CAMERA_INFO, decode_image, IMAGE

DEPTH_UNITS = {'32FC1': 1.0, '16UC1': 1000.0}  # encoding -> units per metre
LABEL_ENCODINGS = ('mono8', '8UC1')
GT_WORDS = {'depth': ('depth',), 'labels': ('label', 'semantic', 'seg')}
OFF = ('', 'none')


class TopicError(ValueError):
    """Topics that cannot be resolved; the message names the candidates and the option."""


@dataclass(frozen=True)
class Topics:
    events: str
    events_msgtype: str
    image: str = ''
    camera_info: str = ''
    depth: str = ''
    labels: str = ''


def depth_metres(image, topic=''):
    """Return (H, W) float32 metres from a decoded depth Image; <= 0 and non-finite: NaN."""
    if image.encoding not in DEPTH_UNITS:
        raise WireError(IMAGE, 'encoding', None, f'{topic}: depth in {image.encoding!r}, '
                        f'expected {" or ".join(DEPTH_UNITS)}')
    depth = image.array.astype(np.float32) / np.float32(DEPTH_UNITS[image.encoding])
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def label_ids(image, topic=''):
    """Return (H, W) uint8 class ids (a copy) from a decoded mono8 label Image."""
    if image.encoding not in LABEL_ENCODINGS:
        raise WireError(IMAGE, 'encoding', None, f'{topic}: labels in {image.encoding!r}, '
                        'expected mono8')
    return np.array(image.array, np.uint8)


def _namespace(topic):
    return topic.rsplit('/', 1)[0]


def _pick(path, kind, candidates, anchor, option, required):
    if len(candidates) > 1 and anchor:
        near = [c for c in candidates if _namespace(c) == _namespace(anchor)]
        candidates = near if len(near) == 1 else candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if required:
            raise TopicError(f'{path}: no {kind} topic; name one with {option}')
        return ''
    raise TopicError(f'{path}: {len(candidates)} {kind} topics ({", ".join(candidates)}); '
                     f'choose one with {option}')


def _first_encodings(reader, topics):
    """Return the encoding of each Image topic's first decodable message."""
    out = {}
    if topics:
        for msg in reader.messages(topics):
            if msg.topic in out or not msg.data:
                continue
            try:
                out[msg.topic] = decode_image(msg.data).encoding
            except WireError:
                continue
            if len(out) == len(topics):
                break
    return out


def _check(reader, topic, msgtypes, option):
    info = reader.topics.get(topic)
    if info is None:
        known = [t for t, i in reader.topics.items() if i.msgtype in msgtypes]
        raise TopicError(f'{reader.path}: {option} {topic}: no such topic in the bag '
                         f'(candidates: {", ".join(known) or "none"})')
    if info.msgtype not in msgtypes:
        raise TopicError(f'{reader.path}: {option} {topic} carries {info.msgtype}, not '
                         f'{" or ".join(msgtypes)}')
    return topic


def find_topics(reader, events=None, image=None, camera_info=None, depth=None, labels=None,
                options=None):
    """Resolve the topics of an open BagReader (see the module docstring).

    options: {kind: how the user names it} for error messages, e.g. {'image':
    '--image-topic'}; kinds are events, image, camera_info, depth, labels.
    """
    names = {k: f'{k}_topic=' for k in ('events', 'image', 'camera_info', 'depth', 'labels')}
    names.update(options or {})
    path, topics = reader.path, reader.topics
    given = {'image': image, 'camera_info': camera_info, 'depth': depth, 'labels': labels}
    for kind, value in given.items():
        if value is not None and value.lower() in OFF:
            given[kind] = ''
        elif value is not None:
            types = (CAMERA_INFO,) if kind == 'camera_info' else (IMAGE,)
            _check(reader, value, types, names[kind])
    if events is not None:
        if events.lower() in OFF:
            raise TopicError(f'{path}: {names["events"]} cannot be off')
        _check(reader, events, EVENT_TYPES, names['events'])
    images = [t for t, info in topics.items() if info.msgtype == IMAGE and info.count
              and t not in given.values()]
    unknown = None in (given['image'], given['depth'], given['labels'])
    enc = _first_encodings(reader, images) if unknown else {}
    found = {
        'depth': [t for t in images if enc.get(t) in DEPTH_UNITS
                  and any(w in t.lower() for w in GT_WORDS['depth'])],
        'labels': [t for t in images if enc.get(t) in LABEL_ENCODINGS
                   and any(w in t.lower() for w in GT_WORDS['labels'])],
    }
    frames = [t for t in images if t in enc and 'FC' not in enc[t]
              and not any(w in t.lower() for words in GT_WORDS.values() for w in words)]
    event_topics = [t for t, info in topics.items() if info.msgtype in EVENT_TYPES]
    image = given['image']
    if image is None and len(frames) == 1:
        image = frames[0]  # it may then decide between several event topics
    events = events or _pick(path, 'event (EventArray or EventPacket)', event_topics, image,
                             names['events'], True)
    if image is None:
        image = _pick(path, 'image', frames, events, names['image'], False)
    resolved = {}
    for kind in ('depth', 'labels'):
        resolved[kind] = given[kind] if given[kind] is not None else _pick(
            path, f'{kind} ground-truth', found[kind], image or events, names[kind], False)
    info = given['camera_info']
    if info is None:
        infos = [t for t, i in topics.items() if i.msgtype == CAMERA_INFO]
        info = _pick(path, 'camera info', infos, image or events, names['camera_info'], False)
    return Topics(events, topics[events].msgtype, image, info, resolved['depth'],
                  resolved['labels'])
