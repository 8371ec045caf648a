"""`gep model ...`: create and inspect deployed model artifacts."""

from pathlib import Path

from . import UsageError


def register(sub):
    model = sub.add_parser('model', help='create and inspect model artifacts')
    cmds = model.add_subparsers(dest='command', metavar='COMMAND', required=True)
    init = cmds.add_parser('init', help='write a randomly initialised artifact (smoke tests)')
    init.add_argument('--variant', default='gep_tiny', help='registered variant name')
    init.add_argument('--out', type=Path, required=True, help='artifact folder to write')
    init.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                      help='model input size, multiples of 14 (default: per variant)')
    init.add_argument('--seed', type=int, default=0)
    init.set_defaults(func=cmd_init)
    info = cmds.add_parser('info', help='print what an artifact holds')
    info.add_argument('artifact', type=Path, help='artifact folder')
    info.set_defaults(func=cmd_info)
    register_export(sub)


def cmd_init(args):
    import torch

    from gep_model.artifact import save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    overrides = {'input_size': tuple(args.input_size)} if args.input_size else {}
    try:
        config = variant_config(args.variant, **overrides)
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip('"')) from None
    torch.manual_seed(args.seed)
    model = GEPModel(config)
    save_artifact(model, args.out, provenance={'stages': ['random init'], 'seed': args.seed})
    print(f'wrote {args.out}: {config.variant}, {model.num_parameters():,} parameters, '
          'random weights')
    return 0


def cmd_info(args):
    from gep_model.artifact import describe, read_meta
    meta = read_meta(args.artifact)
    print(f'artifact       {args.artifact}')
    for line in describe(meta):
        print(line)
    return 0


def register_export(sub):
    export = sub.add_parser('export', help='export an artifact for a runtime (onnx, pt2, '
                            'tensorrt)')
    export.add_argument('artifact', type=Path, help='artifact folder')
    export.add_argument('--format', dest='fmt', choices=('onnx', 'pt2', 'tensorrt'),
                        required=True)
    export.add_argument('--out', type=Path, required=True, help='output file')
    export.add_argument('--max-batch', type=int, default=8, help='largest batch (streams)')
    export.add_argument('--precision', choices=('fp16', 'bf16', 'fp32'), default='fp16',
                        help='TensorRT precision (default fp16)')
    export.set_defaults(func=cmd_export)


def cmd_export(args):
    import torch

    from gep_model.artifact import load_artifact
    from gep_model.runtime import available_backends
    if args.max_batch < 1:
        raise UsageError(f'--max-batch must be at least 1, got {args.max_batch}')
    if args.fmt == 'tensorrt':
        ok, why = available_backends()['tensorrt']
        if not ok:
            raise UsageError(f'--format tensorrt {why}; build the engine on the robot')
    artifact = load_artifact(args.artifact)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.fmt == 'onnx':
        from gep_model.runtime.ort import export_onnx
        export_onnx(artifact.model, args.out, args.max_batch)
    elif args.fmt == 'pt2':
        from gep_model.runtime.step import export_program
        torch.export.save(export_program(artifact.model, args.max_batch), str(args.out))
    else:
        from gep_model.runtime.trt import build_engine
        build_engine(artifact.model.cuda(), args.out, args.max_batch, args.precision, 'cuda')
    print(f'wrote {args.out} ({args.fmt}, batch 1..{args.max_batch})')
    return 0
