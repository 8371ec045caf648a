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
    stats = cmds.add_parser('stats', help="the data's input statistics for the encoders",
                            description='Compute the per-channel mean and std of the event '
                            'representation and of the frames over the training windows of a '
                            "config's data (GEP normalises with its data set's own), and "
                            'print them as model.encoder settings.')
    stats.add_argument('--config', type=Path, required=True, help='stage config (YAML)')
    stats.add_argument('overrides', nargs='*', metavar='key=value',
                       help='override config entries by dotted path')
    stats.add_argument('--write', type=Path, metavar='YAML',
                       help='write the config with the statistics in it here (comments are '
                       'not kept)')
    stats.set_defaults(func=cmd_stats)
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


def cmd_stats(args):
    import yaml

    from training.data.stats import input_stats
    from training.run import load_config, TrainError
    from training.stages.common import ConfigError
    from training.stages.data import datasets
    try:
        config = load_config(args.config, args.overrides)
        stats = input_stats(datasets(config, sequence_length=1)[0])
    except (TrainError, ConfigError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    model = dict(config.get('model') or {})
    model['encoder'] = {**(model.get('encoder') or {}), **stats}
    config['model'] = model
    print(yaml.safe_dump({'model': {'encoder': stats}}, default_flow_style=None), end='')
    if args.write:
        args.write.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
        print(f'wrote {args.write}')
    return 0


def cmd_export(args):
    from training.run import export, TrainError
    try:
        folder = export(args.checkpoint, args.out)
    except TrainError as exc:
        raise UsageError(str(exc)) from None
    print(f'wrote {folder}')
    return 0
