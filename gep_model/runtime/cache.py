"""On-disk cache of compiled engines, keyed by everything that makes an engine valid.

A TensorRT engine is specific to the weights, the input shapes, the precision, the library
versions and the GPU. The key hashes all of them, so a robot builds once (minutes) and every
restart after loads in seconds, while a new artifact, a driver update or another GPU builds
afresh instead of loading an engine that would fail or be wrong.
"""

import hashlib
import json
import os
from pathlib import Path
import tempfile


def default_cache_dir():
    """Return $GEP_ENGINE_CACHE, or ~/.cache/gep_ros/engines."""
    env = os.environ.get('GEP_ENGINE_CACHE')
    if env:
        return Path(env)
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'gep_ros' / 'engines'


def engine_key(**parts):
    """Return a short stable hash of the key parts (JSON-able values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EngineCache:
    """Files named by key under a folder; `get_or_build` builds each key once."""

    def __init__(self, folder=None, suffix='.ep'):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.suffix = suffix

    def path(self, key):
        return self.folder / f'{key}{self.suffix}'

    def get_or_build(self, key, build, load, describe=None):
        """Return load(path) for a cached key; otherwise build(path) into a temp file first.

        `build(path)` writes the engine; it is renamed into place only once complete, so a
        build killed halfway never leaves a file that a later start would try to load. The
        key's parts go beside it as JSON, for whoever wonders what an engine was built for.
        Returns (engine, built) with built True when this call built it.
        """
        path = self.path(key)
        if path.exists():
            return load(path), False
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{key}.', suffix=self.suffix, dir=self.folder)
        os.close(fd)
        try:
            build(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if describe is not None:
            path.with_suffix('.json').write_text(json.dumps(describe, indent=2, default=str))
        return load(path), True
