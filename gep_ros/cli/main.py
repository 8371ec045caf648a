"""Entry point of `gep`: parse arguments, dispatch, and turn user errors into one line.

Every error a user can cause (a missing file, an unknown topic, bytes that do not decode)
prints `gep: error: ...` on stderr and exits with status 2, never a traceback.
"""

import argparse
import sys

from gep_model.errors import ArtifactError

from . import bag_cmd, bench_cmd, model_cmd, replay_cmd, synth_cmd, train_cmd, UsageError
from ..bag import BagError
from ..memory import retain_freed_memory
from ..wire.cdr import WireError

USER_ERRORS = (UsageError, BagError, WireError, ArtifactError, FileNotFoundError,
               IsADirectoryError, NotADirectoryError, PermissionError)
GROUPS = (bag_cmd, synth_cmd, model_cmd, replay_cmd, train_cmd, bench_cmd)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gep', description='Event-camera perception with GEP: bags, models, training.')
    sub = parser.add_subparsers(dest='group', metavar='COMMAND', required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv=None):
    retain_freed_memory()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere among a training command's options.
    if extra and isinstance(getattr(args, 'overrides', None), list) and \
            all('=' in e and not e.startswith('-') for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    try:
        return args.func(args) or 0
    except USER_ERRORS as exc:
        print(f'gep: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('gep: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == '__main__':
    sys.exit(main())
