"""`gep train ...`: the GEP stages and the export of deployed weights."""

from pathlib import Path

from . import UsageError

STAGES = ('align', 'generative', 'finetune')


def register(sub):
    train = sub.add_parser('train', help='train a GEP stage, or export a checkpoint',
                           description='Run a stage from a YAML config (training/configs/), '
                           'resuming from OUT/last.pt if present. Launch with torchrun for '
                           'several GPUs or nodes.')
    cmds = train.add_subparsers(dest='command', metavar='STAGE', required=True)
    for name in STAGES:
        stage = cmds.add_parser(name, help=f'run the {name} stage')
        stage.add_argument('--config', type=Path, required=True, help='stage config (YAML)')
        stage.add_argument('--out', type=Path, required=True, help='run folder')
        stage.add_argument('overrides', nargs='*', metavar='key=value',
                           help='override config entries by dotted path')
        stage.add_argument('--no-progress', action='store_true', help='no progress bar')
        stage.set_defaults(func=cmd_stage, stage=name)
    export = cmds.add_parser('export', help='write the deployed artifact from a checkpoint')
    export.add_argument('checkpoint', type=Path, help='run folder or .pt checkpoint')
    export.add_argument('--out', type=Path, required=True, help='artifact folder')
    export.set_defaults(func=cmd_export)


def cmd_stage(args):
    from training.engine.trainer import NonFiniteLoss
    from training.run import load_config, train, TrainError
    try:
        config = load_config(args.config, args.overrides)
        metrics = train(args.stage, config, args.out, progress=not args.no_progress)
    except (TrainError, NonFiniteLoss) as exc:
        raise UsageError(str(exc)) from None
    shown = [f'{k} {v:.4g}' for k, v in sorted(metrics.items()) if isinstance(v, float)]
    if shown:
        print('validation: ' + ', '.join(shown))
    print(f'{args.stage}: checkpoint {args.out / "last.pt"}')
    return 0


def cmd_export(args):
    from training.run import export, TrainError
    try:
        folder = export(args.checkpoint, args.out)
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    print(f'wrote {folder}')
    return 0
