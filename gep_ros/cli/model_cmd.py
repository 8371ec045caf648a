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
