"""The deployed artifact: round trip, and every kind of bad artifact refused by name."""

import json
import pickle

import pytest
from safetensors.torch import load_file, save_file
import torch

from gep_model.artifact import load_artifact, META, save_artifact, WEIGHTS
from gep_model.errors import ArtifactError
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from gep_ros.cli.main import main


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = GEPModel(variant_config('gep_tiny')).eval()
    folder = save_artifact(model, tmp_path_factory.mktemp('art') / 'tiny',
                           provenance={'stages': ['test']})
    return model, folder


def copy_of(folder, tmp_path):
    dst = tmp_path / 'copy'
    dst.mkdir()
    for name in (META, WEIGHTS):
        (dst / name).write_bytes((folder / name).read_bytes())
    return dst


def test_round_trip_gives_the_same_network(saved):
    model, folder = saved
    loaded = load_artifact(folder)
    assert loaded.config == model.config
    x = torch.randn(1, 3, *model.config.input_size)
    with torch.no_grad():
        a, _ = model.step(x)
        b, _ = loaded.model.step(x)
    torch.testing.assert_close(a['depth'], b['depth'], rtol=0, atol=0)
    meta = loaded.meta
    assert meta['provenance']['stages'] == ['test'] and len(meta['digest']) == 64
    assert len(meta['class_names']) == len(meta['palette']) == 11
    assert meta['representation']['name'] == 'polarity_rgb'


def edit_meta(folder, **changes):
    meta = json.loads((folder / META).read_text())
    meta.update(changes)
    (folder / META).write_text(json.dumps(meta))


def edit_tensors(folder, fn):
    tensors = load_file(folder / WEIGHTS)
    fn(tensors)
    save_file(tensors, folder / WEIGHTS)


def test_the_digest_is_the_weights_not_the_order_of_the_header(saved, tmp_path):
    # safetensors writes its header's maps in no fixed order (another process may write
    # the keys otherwise): the digest must not follow the order, but must follow the data.
    from gep_model.artifact import _digest
    _, folder = saved
    raw = (folder / WEIGHTS).read_bytes()
    size = int.from_bytes(raw[:8], 'little')
    header = json.loads(raw[8:8 + size])
    shuffled = {key: (dict(reversed(value.items())) if isinstance(value, dict) else value)
                for key, value in reversed(header.items())}
    text = json.dumps(shuffled, separators=(',', ':')).encode()
    assert text != raw[8:8 + size].rstrip() and len(text) <= size
    copy = copy_of(folder, tmp_path)
    (copy / WEIGHTS).write_bytes(raw[:8] + text.ljust(size) + raw[8 + size:])
    assert _digest(copy) == _digest(folder) == json.loads((folder / META).read_text())['digest']
    (copy / WEIGHTS).write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert _digest(copy) != _digest(folder)


@pytest.mark.parametrize('damage, message', [
    (lambda f: edit_meta(f, format_version=99), 'format version 99'),
    (lambda f: edit_meta(f, format='something-else'), 'not a gep-model file'),
    (lambda f: (f / META).write_text('{not json'), 'not readable JSON'),
    (lambda f: (f / WEIGHTS).unlink(), 'model.safetensors is missing'),
    (lambda f: edit_tensors(f, lambda t: t.pop('depth_head.out.2.bias')),
     'tensor depth_head.out.2.bias is missing'),
    (lambda f: edit_tensors(f, lambda t: t.update(extra=torch.zeros(2))),
     'unexpected tensor extra'),
    (lambda f: edit_tensors(f, lambda t: t.update({'temporal.norm.weight': torch.zeros(7)})),
     r'temporal.norm.weight has shape \(7,\)'),
    (lambda f: edit_tensors(f, lambda t: t['temporal.norm.bias'].__setitem__(0, float('nan'))),
     'temporal.norm.bias has non-finite values'),
    (lambda f: (f / WEIGHTS).write_bytes(b'garbage' * 10), 'not a readable safetensors file'),
    (lambda f: edit_meta(f, config={'variant': 'x', 'bogus': 1}), 'bad config'),
])
def test_bad_artifacts_are_refused_by_name(saved, tmp_path, damage, message):
    folder = copy_of(saved[1], tmp_path)
    damage(folder)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(folder)


class Exploit:
    """A pickle that creates a file when unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_a_pickle_in_place_of_the_weights_is_never_executed(saved, tmp_path):
    folder = copy_of(saved[1], tmp_path)
    marker = tmp_path / 'marker'
    (folder / WEIGHTS).write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(ArtifactError, match='not a readable safetensors file'):
        load_artifact(folder)
    assert not marker.exists()


def test_cli_init_and_info(tmp_path, capsys):
    out = tmp_path / 'art'
    assert main(['model', 'init', '--variant', 'gep_tiny', '--out', str(out),
                 '--input-size', '126', '168']) == 0
    assert load_artifact(out).config.input_size == (126, 168)
    assert main(['model', 'info', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'gep_tiny' in text and '168x126' in text and 'random init' in text
    assert main(['model', 'init', '--variant', 'nope', '--out', str(tmp_path / 'x')]) == 2
    assert main(['model', 'info', str(tmp_path / 'missing')]) == 2
    err = capsys.readouterr().err
    assert "unknown model variant 'nope'" in err and 'no such artifact folder' in err


def test_representation_must_fit_the_encoder(saved, tmp_path):
    model, folder = saved
    with pytest.raises(ArtifactError, match='the encoder takes 3 channels'):
        save_artifact(model, tmp_path / 'x', representation={'name': 'voxel_grid', 'bins': 5})
    copy = copy_of(folder, tmp_path)
    edit_meta(copy, representation={'name': 'histogram'})
    with pytest.raises(ArtifactError, match='makes 2 channels'):
        load_artifact(copy)
    edit_meta(copy, representation={'name': 'sparkles'})
    with pytest.raises(ArtifactError, match="unknown representation 'sparkles'"):
        load_artifact(copy)


def test_cli_export_onnx_and_pt2(saved, tmp_path, capsys):
    import onnxruntime

    _, folder = saved
    assert main(['export', str(folder), '--format', 'pt2', '--out', str(tmp_path / 's.pt2'),
                 '--max-batch', '2']) == 0
    program = torch.export.load(str(tmp_path / 's.pt2'))
    assert program.module() is not None
    assert main(['export', str(folder), '--format', 'onnx', '--out', str(tmp_path / 's.onnx'),
                 '--max-batch', '2']) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / 's.onnx'))
    assert [i.name for i in session.get_inputs()][:3] == ['event', 'image', 'has_image']
    assert 'wrote' in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(['export', str(folder), '--format', 'tensorrt', '--out',
                     str(tmp_path / 's.ep')]) == 2
        assert 'needs torch_tensorrt and a CUDA GPU' in capsys.readouterr().err
