"""`gep replay`: run the perception pipeline on a bag without ROS; outputs, report, panels."""

from pathlib import Path

from . import UsageError


def register(sub):
    replay = sub.add_parser(
        'replay', help='run the pipeline on a bag: output bag, metrics report, panels',
        description='Feed a bag through the same pipeline the node runs, as fast as it goes '
                    '(every window processed) or at the recorded pace (--realtime). Writes the '
                    'outputs, at their header stamps, with the inputs into a new mcap bag, a '
                    'JSON report (counts, drops, rejections, latency, metrics against the '
                    'ground-truth topics) and PNG panels of a few windows beside the report. '
                    "Topics are found by type where the bag leaves no doubt; 'none' turns an "
                    'optional topic off.')
    replay.add_argument('bag', type=Path, help='.bag file, .db3/.mcap file or rosbag2 folder')
    replay.add_argument('--weights', type=Path, required=True, help='artifact folder')
    replay.add_argument('--out', type=Path, required=True, metavar='OUT_BAG',
                        help='output bag (new; an mcap bag folder)')
    replay.add_argument('--config', type=Path, help='ROS 2 parameter YAML (perception.yaml)')
    replay.add_argument('--report', type=Path, metavar='FILE.json',
                        help='report file; panels go beside it (default: OUT_BAG/report.json)')
    for name, what in (('events', 'EventArray or EventPacket topic'),
                       ('image', 'frame topic (sensor_msgs/Image)'),
                       ('camera-info', 'CameraInfo topic (for depth/points)'),
                       ('depth-gt', 'ground-truth depth topic (32FC1 metres or 16UC1 mm)'),
                       ('labels-gt', 'ground-truth label topic (mono8 class ids)')):
        replay.add_argument(f'--{name}-topic', metavar='T', help=f'{what} of camera cam0')
    replay.add_argument('--backend', help='auto, tensorrt, cuda, cpu or onnxruntime '
                                          '(default: from --config, else auto)')
    replay.add_argument('--max-batch', type=int, metavar='N', help='largest inference batch')
    replay.add_argument('--realtime', action='store_true',
                        help='play at the recorded pace and drop windows as the robot would')
    replay.add_argument('--panels', type=int, default=4, metavar='N',
                        help='PNG panels of N evenly spaced windows (default: 4; 0: none)')
    replay.add_argument('--no-inputs', dest='copy_inputs', action='store_false',
                        help='do not copy the input topics into the output bag')
    replay.set_defaults(func=cmd_replay)


def cmd_replay(args):
    from ..replay import replay, ReplayError, ReplayOptions
    if args.panels < 0:
        raise UsageError(f'--panels must be zero or positive, got {args.panels}')
    options = ReplayOptions(
        args.bag, args.weights, args.out, report=args.report, config=args.config,
        events_topic=args.events_topic, image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic, depth_gt_topic=args.depth_gt_topic,
        labels_gt_topic=args.labels_gt_topic, backend=args.backend, max_batch=args.max_batch,
        realtime=args.realtime, panels=args.panels, copy_inputs=args.copy_inputs)
    try:
        report = replay(options)
    except ReplayError as exc:
        raise UsageError(str(exc)) from None
    print('\n'.join(summary_lines(report)))
    return 0


def _counts(counts):
    return ', '.join(f'{k} {v}' for k, v in counts.items()) or 'none'


def _num(value, fmt='.3f'):
    return '-' if value is None else format(value, fmt)


def summary_lines(report):
    """Return the end-of-run summary of a replay report, as lines."""
    w = report['weights']
    lines = [f'replay {report["bag"]} -> {report["out_bag"]}',
             f'  weights    {w["variant"]} {w["digest"][:12]} on {report["backend"]}, '
             f'{report["mode"]}, {report["window_mode"]} windows',
             f'  windows    {report["windows"]} in {report["wall_s"]:.1f} s '
             f'({_num(report["windows_per_s"], ".1f")} windows/s)',
             f'  outputs    {_counts(report["outputs"])}',
             f'  dropped    {sum(report["dropped"].values())} ({_counts(report["dropped"])})',
             f'  rejected   {sum(report["rejected"].values())} ({_counts(report["rejected"])})']
    if report['inference_error']:
        lines.append(f'  inference  failed: {report["inference_error"]}')
    lines.append('  latency ms        p50        p95')
    for stage, s in report['latency_ms'].items():
        lines.append(f'    {stage:<12} {_num(s["p50"], "9.2f")}  {_num(s["p95"], "9.2f")}')
    metrics = report['metrics']
    if not metrics:
        lines.append('  metrics    none (no ground-truth topics)')
    if 'depth' in metrics:
        d = metrics['depth']
        cut = ', '.join(f'mae_{c} {_num(d.get(f"mae_{c}"), ".2f")}' for c in d['cutoffs'])
        lines.append(f'  depth      abs_rel {_num(d["abs_rel"])}, '
                     f'rmse {_num(d["rmse"], ".2f")} m, mae {_num(d["mae"], ".2f")} m '
                     f'({cut}), delta1 {_num(d["delta1"])}; '
                     f'{d["frames"]} frames, {d["pixels"]} pixels')
    if 'segmentation' in metrics:
        s = metrics['segmentation']
        lines.append(f'  labels     mIoU {_num(s["miou"])}, pixel acc {_num(s["pixel_acc"])}, '
                     f'mean class acc {_num(s["mean_class_acc"])}; {s["frames"]} frames')
    lines.append(f'  report     {report["report"]}')
    panels = report['panels']
    where = str(Path(panels[0]).parent) if panels else '-'
    lines.append(f'  panels     {len(panels)} in {where}')
    return lines
