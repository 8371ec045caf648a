"""`gep bench ...`: benchmarks that print a table and write JSON rows."""

from pathlib import Path
import sys


def register(sub):
    bench = sub.add_parser('bench', help='benchmarks against a baseline in the same run')
    cmds = bench.add_subparsers(dest='command', metavar='COMMAND', required=True)
    wire = cmds.add_parser('wire', help='CDR codecs against rosbags and the code the compiled '
                           'kernels replaced')
    wire.add_argument('--json', type=Path, help='write the rows to this JSON file')
    wire.add_argument('--quick', action='store_true', help='fewer repetitions')
    wire.set_defaults(func=cmd_wire)
    events = cmds.add_parser('events', help='event representations against the code they '
                             'replaced')
    events.add_argument('--json', type=Path, help='write the rows to this JSON file')
    events.add_argument('--quick', action='store_true', help='fewer repetitions')
    events.set_defaults(func=cmd_events)
    model = cmds.add_parser('model', help='model step latency per backend, against eager CPU')
    model.add_argument('--json', type=Path, help='write the rows to this JSON file')
    model.add_argument('--quick', action='store_true', help='fewer repetitions')
    model.add_argument('--variants', nargs='+', default=['gep_tiny', 'gep_small'])
    model.set_defaults(func=cmd_model)
    pipeline = cmds.add_parser('pipeline', help='end-to-end latency at the sensor pace, and the '
                               'event rate decode and windowing hold')
    pipeline.add_argument('--json', type=Path, help='write the rows to this JSON file')
    pipeline.add_argument('--quick', action='store_true', help='shorter streams')
    pipeline.add_argument('--variants', nargs='+', default=['gep_tiny', 'gep_small'])
    pipeline.set_defaults(func=cmd_pipeline)
    gpu = cmds.add_parser('gpu', help='the prepared GPU check: the cuda backend per precision, '
                          'representations on the device, a training step per stage, a '
                          'torchrun NCCL smoke, TensorRT where it imports')
    gpu.add_argument('--json', type=Path, help='write the rows to this JSON file')
    gpu.add_argument('--quick', action='store_true',
                     help="fewer repetitions and a fifth of each part's time budget")
    gpu.add_argument('--device', default='cuda',
                     help='cuda (default) or cpu, to check the plumbing without a GPU')
    gpu.add_argument('--variants', nargs='+', default=['gep_tiny', 'gep_small'])
    gpu.add_argument('--sensors', nargs='+', default=['346x260', '640x480'],
                     help='sensor input sizes (346x260, 640x480); training uses the first')
    gpu.add_argument('--batches', nargs='+', type=int, default=[1, 4, 8])
    gpu.add_argument('--precisions', nargs='+', default=['fp32', 'fp16', 'bf16'])
    gpu.add_argument('--parts', nargs='+',
                     default=['runtime', 'events', 'train', 'ddp', 'tensorrt'])
    gpu.add_argument('--train-amp', default='bf16',
                     help='autocast dtype of the training steps on the GPU: bf16, fp16, none')
    gpu.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'),
                     help="model input size in place of the sensors' (a quick plumbing check)")
    gpu.set_defaults(func=cmd_gpu)


def cmd_wire(args):
    from ..bench import wire
    wire.run(args.json, quick=args.quick, command=' '.join(['gep'] + sys.argv[1:]))
    return 0


def cmd_events(args):
    from ..bench import events
    events.run(args.json, quick=args.quick, command=' '.join(['gep'] + sys.argv[1:]))
    return 0


def cmd_model(args):
    from ..bench import model
    model.run(args.json, quick=args.quick, variants=args.variants,
              command=' '.join(['gep'] + sys.argv[1:]))
    return 0


def cmd_pipeline(args):
    from ..bench import pipeline
    pipeline.run(args.json, quick=args.quick, variants=args.variants,
                 command=' '.join(['gep'] + sys.argv[1:]))
    return 0


def cmd_gpu(args):
    from . import UsageError
    from ..bench import gpu
    try:
        gpu.run(args.json, device=args.device, quick=args.quick, variants=args.variants,
                sensors=args.sensors, batches=args.batches, precisions=args.precisions,
                parts=args.parts, train_amp=args.train_amp, input_size=args.input_size,
                command=' '.join(['gep'] + sys.argv[1:]))
    except gpu.GpuCheckError as exc:
        raise UsageError(str(exc)) from None
    return 0
