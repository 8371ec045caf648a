"""`gep synth`: write a procedural street scene with exact depth and labels as a ROS 2 bag."""

from pathlib import Path

from . import UsageError

# EVT3 addresses are 11 bits, so the EventPacket stream caps the sensor size.
MAX_SIDE = 2048


def register(sub):
    synth = sub.add_parser(
        'synth', help='write a synthetic scene as a bag: events, frames, depth, labels',
        description='Simulate an event camera (and a frame camera on the same pixels) '
                    'driving down a procedural street; write events (dvs_msgs and EVT3 '
                    'event_camera_msgs), frames, exact depth, class labels and camera info.')
    synth.add_argument('--out', type=Path, required=True, help='output bag folder (new)')
    synth.add_argument('--seconds', type=float, default=2.0, help='duration (default: 2)')
    synth.add_argument('--seed', type=int, default=0, help='scene and noise seed (default: 0)')
    synth.add_argument('--width', type=int, default=346, help='sensor width (default: 346)')
    synth.add_argument('--height', type=int, default=260, help='sensor height (default: 260)')
    synth.add_argument('--contrast', type=float, default=0.2,
                       help='contrast threshold on the log intensity (default: 0.2)')
    synth.add_argument('--noise-rate', type=float, default=0.1, metavar='HZ',
                       help='background noise events per pixel and second (default: 0.1)')
    synth.add_argument('--frame-rate', type=float, default=20.0, metavar='HZ',
                       help='frames, depth and labels per second (default: 20)')
    synth.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    synth.add_argument('--rgb', action='store_true',
                       help='publish /dvs/image_raw as rgb8 (class-tinted) instead of mono8')
    synth.set_defaults(func=cmd_synth)


def _check(args):
    if args.out.exists():
        raise UsageError(f'{args.out}: already exists; choose a new output path')
    if args.seed < 0:
        raise UsageError(f'--seed must be zero or positive, got {args.seed}')
    if not 0 < args.seconds <= 3600:
        raise UsageError(f'--seconds must be in (0, 3600], got {args.seconds}')
    for name in ('width', 'height'):
        if not 2 <= getattr(args, name) <= MAX_SIDE:
            raise UsageError(f'--{name} must be in [2, {MAX_SIDE}], got {getattr(args, name)}')
    if not args.contrast > 0:
        raise UsageError(f'--contrast must be positive, got {args.contrast}')
    if not args.noise_rate >= 0:
        raise UsageError(f'--noise-rate must be zero or positive, got {args.noise_rate}')
    if not args.frame_rate > 0:
        raise UsageError(f'--frame-rate must be positive, got {args.frame_rate}')


def cmd_synth(args):
    _check(args)
    from training.synthetic import SceneConfig, SensorConfig
    from training.synthetic.bag import TOPICS, write_synth_bag
    counts = write_synth_bag(
        args.out, seconds=args.seconds, seed=args.seed, storage=args.storage,
        config=SceneConfig(width=args.width, height=args.height),
        sensor=SensorConfig(contrast=args.contrast, noise_rate_hz=args.noise_rate),
        frame_rate=args.frame_rate, rgb=args.rgb)
    print(f'wrote {args.out} ({args.storage}): {args.seconds:g} s, seed {args.seed}, '
          f'{args.width}x{args.height}')
    width = max(len(t) for t in counts)
    for topic, count in counts.items():
        print(f'  {topic:<{width}}  {TOPICS[topic]:<36}  {count:>8}')
    return 0
