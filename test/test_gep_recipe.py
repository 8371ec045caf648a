"""GEP's recipe for stages 1 and 2, checked against the authors' definitions.

The stage-2 aggregation against a plain loop written from GEP's utils.spatiotemporal_aggregate,
the DSEC frame warp against a known homography, the stage-1 augmentation keeping event
image and frame crops identical, and the stage-1 / stage-2 optimiser settings as configured.
"""

from pathlib import Path

from helpers.toy_stage import ToyStage
import numpy as np
import pytest
import torch
import yaml

from gep_model.model import GEPModel
from gep_model.nn.temporal import EVENT, IMAGE, interleave_windows, spatiotemporal_aggregate
from gep_model.registry import variant_config
from training.data.augment import augment_params, paired_augment
from training.data.bag_windows import centred_bounds
from training.data.dsec import DsecSequence, frame_to_event_homography, warp_frame
from training.data.mvsec import MvsecSequence
from training.engine.distributed import DistInfo
from training.engine.trainer import LoopConfig, Trainer
from training.stages.align import AlignStage
from training.stages.common import ConfigError, freeze
from training.stages.generative import GenerativeObjective, GenerativeStage, token_scheme

CONFIGS = Path(__file__).resolve().parent.parent / 'training' / 'configs'
MS = 1_000_000
GEP_IMAGE, GEP_EVENT = 1, 2  # the authors' modality ids (dataset.py:1425-1431)


def authors_aggregate(slot, ids, tokens_per_image, images_per_group=8):
    """Run GEP's utils.spatiotemporal_aggregate on one sample, as a plain loop.

    slot: (L, D) tokens, ids: (L,) the authors' ids with 0 for padding. Returns the list of
    (token (D,), id) it keeps, in order.
    """
    n = tokens_per_image
    images = [(slot[i:i + n], ids[i:i + n]) for i in range(0, len(slot), n)]
    out = []
    for g in range(0, len(images), images_per_group):
        group = images[g:g + images_per_group]
        for p in range(n):
            values = [img[p] for img, i in group if i[p] != 0]
            if not values:
                continue
            counts = [sum(1 for _, i in group if i[p] == k) for k in range(5)]
            counts[0] = 0  # padding never wins: GEP's valid mask zeroes it
            out.append((sum(values) / len(values), int(np.argmax(counts))))
        for img, i in group:
            if (i != 0).any():
                out.append((img.mean(dim=0), int(i[0])))
    return out


@pytest.mark.parametrize('with_frames', [True, False])
def test_aggregation_equals_the_authors_loop(with_frames):
    torch.manual_seed(0)
    b, t, n, d = 2, 6, 5, 4
    events = torch.randn(b, t, n, d)
    images = torch.randn(b, t, n, d) if with_frames else None
    has_image = torch.ones(b, t, dtype=torch.bool)
    has_image[1, 2] = False  # a missing frame: padding in the authors' terms
    chunks, modality, window, valid = interleave_windows(events, images, has_image)
    tokens, mod, win, slot, ok = spatiotemporal_aggregate(chunks, modality, window, valid)
    groups = -(-chunks.shape[1] // 8)
    assert tokens.shape == (b, groups * (n + 8), d)
    for i in range(b):
        seq, ids = [], []
        for k in range(t):  # events then the frame, per window (SequenceDataset)
            seq.append(events[i, k])
            ids += [GEP_EVENT] * n
            if with_frames:
                seq.append(images[i, k] if has_image[i, k] else torch.zeros(n, d))
                ids += [GEP_IMAGE if has_image[i, k] else 0] * n
        expected = authors_aggregate(torch.cat(seq), torch.tensor(ids), n)
        got = tokens[i][ok[i]]
        ours = {EVENT: GEP_EVENT, IMAGE: GEP_IMAGE}
        assert len(got) == len(expected)
        for token, m, (want, want_id) in zip(got, mod[i][ok[i]].tolist(), expected):
            torch.testing.assert_close(token, want)
            assert ours[m] == want_id
    # The first group's temporal means sit at window 0 and the patches' slots, the spatial
    # means at their chunk's window and the mean slot n.
    assert slot[0, :n].tolist() == list(range(n)) and win[0, :n].tolist() == [0] * n
    assert slot[0, n:n + 8].tolist() == [n] * 8
    first = min(8, chunks.shape[1])
    assert win[0, n:n + first].tolist() == window[0, :first].tolist()


def test_generative_patch_scheme_trains_a_tiny_model():
    cfg = variant_config('gep_tiny', input_size=(28, 42))
    cfg.temporal.pool_grid = None
    gep = GEPModel(cfg)
    objective = GenerativeObjective(gep, scheme='patches')
    n = 2 * 3
    loss, _ = objective(torch.randn(2, 4, n, 48), torch.randn(2, 4, n, 48),
                        torch.ones(2, 4, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and gep.temporal.head.weight.grad.abs().sum() > 0
    pooled = GEPModel(variant_config('gep_tiny', input_size=(42, 56)))
    with pytest.raises(ConfigError, match='pool_grid: null'):
        token_scheme({'tokens': {'scheme': 'patches'}}, pooled)
    with pytest.raises(ConfigError, match='tokens.scheme'):
        token_scheme({'tokens': {'scheme': 'cells'}}, pooled)


def calibration(rotation, k_event=(500.0, 510.0, 320.0, 240.0),
                k_image=(1100.0, 1105.0, 700.0, 520.0), r_rect0=None, r_rect1=None):
    t_10 = np.eye(4)
    t_10[:3, :3] = rotation
    t_10[:3, 3] = [0.1, 0.0, 0.0]
    return {'intrinsics': {'camRect0': {'camera_matrix': list(k_event)},
                           'camRect1': {'camera_matrix': list(k_image)}},
            'extrinsics': {'T_10': t_10.tolist(),
                           'R_rect0': (np.eye(3) if r_rect0 is None else r_rect0).tolist(),
                           'R_rect1': (np.eye(3) if r_rect1 is None else r_rect1).tolist()}}


def rot_y(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_dsec_warp_follows_the_known_homography():
    k0 = np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]])
    k1 = np.array([[1100.0, 0, 700], [0, 1105, 520], [0, 0, 1]])
    rot, r0, r1 = rot_y(0.02), rot_y(0.01), rot_y(-0.015)
    h = frame_to_event_homography(calibration(rot, r_rect0=r0, r_rect1=r1))
    # GEP pre_dse.py:171-178: T = R_rect1 T_10 R_rect0^-1, H = (K1 R K0^-1)^-1.
    np.testing.assert_allclose(h, np.linalg.inv(k1 @ (r1 @ rot @ r0.T) @ np.linalg.inv(k0)),
                               rtol=1e-9)
    # A bright dot in the frame lands where the homography sends it on the event grid.
    frame = np.zeros((1040, 1400, 3), np.uint8)
    u, v = 760, 500
    frame[v - 2:v + 3, u - 2:u + 3] = 255
    warped = warp_frame(frame, h, (480, 640))
    assert warped.shape == (480, 640, 3)
    q = h @ np.array([u, v, 1.0])
    y, x = np.unravel_index(np.argmax(warped[..., 0]), warped.shape[:2])
    assert abs(x - q[0] / q[2]) <= 1 and abs(y - q[1] / q[2]) <= 1
    # Same intrinsics and no rotation: the frame is left as it is.
    same = frame_to_event_homography(calibration(np.eye(3), k_image=(500.0, 510.0, 320, 240)))
    np.testing.assert_allclose(same, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match='cam_to_cam'):
        frame_to_event_homography({'intrinsics': {}})


def test_centred_windows_run_midpoint_to_midpoint():
    t0, t1 = centred_bounds(np.array([100, 200, 400, 500]))
    assert t0.tolist() == [50, 150, 300, 450] and t1.tolist() == [150, 300, 450, 550]


def test_augmentation_keeps_event_and_frame_crops_identical():
    torch.manual_seed(3)
    images = torch.rand(6, 3, 28, 42)
    events = images.clone()  # the same picture on both sides: any misalignment shows
    params = augment_params({'swap_polarity': 0.0})
    out_events, out_images = paired_augment(events, images, params)
    assert out_events.shape == events.shape
    torch.testing.assert_close(out_events, out_images, rtol=0, atol=0)
    assert (out_images - images).abs().amax() > 0.1  # something was cropped or flipped
    swapped, frames = paired_augment(events, images, augment_params(
        {'swap_polarity': 1.0, 'flip': 0.0, 'crop_scale': None}))
    torch.testing.assert_close(swapped, images[:, [2, 1, 0]])
    torch.testing.assert_close(frames, images)  # the frame keeps its colours
    with pytest.raises(ValueError, match='augment.crop_scale'):
        augment_params({'crop_scale': [0.5, 2.0]})
    with pytest.raises(ValueError, match='augment.jitter'):
        augment_params({'jitter': 1})


def load(name):
    return yaml.safe_load((CONFIGS / name).read_text())


def test_stage_optimisers_as_the_authors_set_them():
    for path in sorted(CONFIGS.glob('align_*.yaml')):
        loop = load(path.name)['loop']
        assert (loop['lr'], loop['weight_decay'], loop['grad_clip'],
                loop['grad_clip_value']) == (2e-5, 0.0, 1.0, 2.0), path.name
    for path in sorted(CONFIGS.glob('generative_*.yaml')):
        loop = load(path.name)['loop']
        assert (loop['lr'], loop['weight_decay'], loop['grad_clip'],
                loop['grad_clip_value']) == (1e-4, 1e-5, 1.0, 0.5), path.name
    temps = {name: load(f'align_{name}_small_gpu.yaml')['losses']['temperature']
             for name in ('dsec', 'ddd17', 'mvsec', 'nimagenet')}
    assert temps == {'dsec': 0.5, 'ddd17': 0.5, 'mvsec': 0.5, 'nimagenet': 0.2}
    # Stage 1: no weight decay anywhere; stage 2: none on the transformer, the head decays.
    gep = GEPModel(variant_config('gep_tiny', input_size=(42, 56)))
    align = object.__new__(AlignStage)
    align.config = load('align_tiny_cpu.yaml')
    assert all(g['weight_decay'] == 0.0 for g in align.param_groups(gep))
    gen = object.__new__(GenerativeStage)
    gen.config = load('generative_tiny_cpu.yaml')
    objective = GenerativeObjective(gep, scheme='pooled')
    freeze(gep)
    freeze(gep.temporal, False)  # what the stage trains
    decayed = {id(p) for g in gen.param_groups(objective) if g['weight_decay'] > 0
               for p in g['params']}
    names = {n for n, p in objective.named_parameters() if id(p) in decayed}
    assert names == {'gep.temporal.head.weight'}


def test_trainer_clips_the_norm_then_each_value(tmp_path, monkeypatch):
    calls = []
    norm, value = torch.nn.utils.clip_grad_norm_, torch.nn.utils.clip_grad_value_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_',
                        lambda p, m: calls.append(('norm', m)) or norm(p, m))
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_value_',
                        lambda p, v: calls.append(('value', v)) or value(p, v))
    loop = LoopConfig(steps=1, batch_size=4, grad_clip=1.0, grad_clip_value=0.5, ckpt_every=1)
    Trainer(ToyStage(), loop, tmp_path, DistInfo(), progress=False).train()
    assert calls == [('norm', 1.0), ('value', 0.5)]


def test_dsec_reader_warps_frames_and_centres_windows(tmp_path):
    from test_training_data import write_dsec
    root = tmp_path / 'seq'
    write_dsec(root)
    # The RGB camera's principal point one pixel right of the event camera's: the frame
    # moves one pixel left on the event grid, its last column comes from outside (zeros).
    (root / 'calibration').mkdir()
    cal = calibration(np.eye(3), k_event=(100.0, 100.0, 4.0, 3.0),
                      k_image=(100.0, 100.0, 5.0, 3.0))
    (root / 'calibration' / 'cam_to_cam.yaml').write_text(yaml.safe_dump(cal))
    sequence = DsecSequence(root)
    assert sequence.identity()['warp']
    mid = list(sequence.samples({'anchor': 'centre'}))[1]
    assert (mid['stamp_ns'], mid['t0'], mid['t1']) == (1_100 * MS, 1_075 * MS, 1_125 * MS)
    k = np.array([16, 17, 18, 19, 20, 21, 22, 24, 25])  # (75, 125] ms; x 7 -> 8 is off
    assert np.array_equal(mid['events']['t'], 1_000 * MS + 5 * MS * k)
    assert np.array_equal(mid['frame'][:, :7], np.broadcast_to([11, 2, 3], (6, 7, 3)))
    assert (mid['frame'][:, 7] == 0).all()
    with pytest.raises(ValueError, match='nothing.yaml .DSEC calibration.'):
        DsecSequence(root, calibration=root / 'nothing.yaml', warp=True)


def test_mvsec_reader_centres_windows(tmp_path):
    from test_training_data import write_mvsec
    write_mvsec(tmp_path)
    seq = MvsecSequence(tmp_path / 'seq_data.hdf5', tmp_path / 'seq_gt.hdf5')
    first, second = seq.samples({'anchor': 'centre'})  # depth at 10.1, 10.2, 10.29 s
    assert (first['stamp_ns'], first['t0'], first['t1']) == (10_100 * MS, 10_050 * MS,
                                                             10_150 * MS)
    assert np.array_equal(first['events']['t'], 10_000 * MS + 5 * MS * np.arange(11, 31))
    assert (second['t0'], second['t1']) == (10_150 * MS, 10_245 * MS)
    assert np.array_equal(second['events']['t'], 10_000 * MS + 5 * MS * np.arange(31, 50))
    with pytest.raises(ValueError, match='window.anchor'):
        seq.samples({'anchor': 'middle'}).__next__()
