"""`gep bench ...`: benchmarks that print a table and write JSON rows."""

from pathlib import Path
import sys


def register(sub):
    bench = sub.add_parser('bench', help='benchmarks against a baseline in the same run')
    cmds = bench.add_subparsers(dest='command', metavar='COMMAND', required=True)
    wire = cmds.add_parser('wire', help='CDR codecs against rosbags')
    wire.add_argument('--json', type=Path, help='write the rows to this JSON file')
    wire.add_argument('--quick', action='store_true', help='fewer repetitions')
    wire.set_defaults(func=cmd_wire)


def cmd_wire(args):
    from ..bench import wire
    wire.run(args.json, quick=args.quick, command=' '.join(['gep'] + sys.argv[1:]))
    return 0
