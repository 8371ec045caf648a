"""Runtimes: one interface over the backends, per-stream state, exports, the engine cache."""

from dataclasses import replace
import json

from conftest import TINY_MAX_BATCH
import numpy as np
import pytest
import torch

from gep_model.artifact import load_artifact, save_artifact
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from gep_model.runtime import available_backends, choose_backend, make_runtime
from gep_model.runtime.cache import default_cache_dir, engine_key, EngineCache
from gep_model.runtime.step import export_program

CUDA = torch.cuda.is_available()


SIZE = (56, 84)  # small windows: eager steps on a CPU dominate this file's time


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    torch.manual_seed(2)
    folder = tmp_path_factory.mktemp('rt') / 'tiny'
    save_artifact(GEPModel(variant_config('gep_tiny', input_size=SIZE)), folder)
    return load_artifact(folder)


def windows(n, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=g)


def reference(artifact, events, streams):
    """Each stream stepped alone through the eager model, in order."""
    model, states, out = artifact.model, {}, []
    with torch.no_grad():
        for x, s in zip(events, streams):
            o, states[s] = model.step(x[None], state=states.get(s))
            out.append((o['depth'][0, 0].numpy(), o['seg_logits'][0].argmax(0).numpy()))
    return out


def test_cpu_runtime_keeps_each_streams_state(artifact):
    events = windows(7)
    streams = ['left', 'right', 'left', 'left', 'right', 'front', 'left']
    runtime = make_runtime(artifact, 'cpu', max_batch=2)
    got = runtime.infer(events[:4], streams=streams[:4])
    got += runtime.infer(events[4:], streams=streams[4:])
    for out, (depth, labels) in zip(got, reference(artifact, events, streams)):
        assert out.depth.dtype == np.float32 and out.labels.dtype == np.uint8
        np.testing.assert_allclose(out.depth, depth, rtol=1e-5, atol=1e-5)
        assert np.mean(out.labels == labels) > 0.999
    runtime.reset('left')
    fresh = runtime.infer(events[:1], streams=['left'])[0]
    np.testing.assert_allclose(fresh.depth, got[0].depth, rtol=1e-5, atol=1e-5)


def test_a_whole_batch_in_order_is_not_copied_and_not_written(artifact):
    events, images = windows(2, seed=4), windows(2, seed=5)
    kept = events.clone(), images.clone()
    runtime = make_runtime(artifact, 'cpu', max_batch=2)
    seen = []
    run = runtime._run

    def spy(inputs):
        seen.append({name: value.data_ptr() for name, value in inputs.items()})
        return run(inputs)

    runtime._run = spy
    whole = runtime.infer(events, images, streams=['a', 'b'])
    # The step gets the caller's own tensors, and only reads them.
    assert seen[0]['event'] == events.data_ptr() and seen[0]['image'] == images.data_ptr()
    assert torch.equal(events, kept[0]) and torch.equal(images, kept[1])
    # A strided batch (a frame expanded from grey) and rows taken in rounds are gathered:
    # the same outputs as the whole contiguous batch.
    strided = make_runtime(artifact, 'cpu', max_batch=2)
    strided._run = spy
    grey = images[:, :1].expand(-1, 3, -1, -1)
    split = strided.infer(events, grey, streams=['a', 'b'])
    assert seen[1]['image'] != grey.data_ptr()
    alone = make_runtime(artifact, 'cpu', max_batch=2)
    alone = alone.infer(events, grey.contiguous(), streams=['a', 'b'])
    for x, y in zip(split, alone):
        np.testing.assert_array_equal(x.depth, y.depth)
    rounds = make_runtime(artifact, 'cpu', max_batch=2).infer(
        torch.cat([events, events]), torch.cat([images, images]), streams=['a', 'b', 'a', 'b'])
    for x, y in zip(rounds[:2], whole):
        np.testing.assert_array_equal(x.depth, y.depth)


def test_a_stream_past_its_context_keeps_running(artifact):
    runtime = make_runtime(artifact, 'cpu')
    n = artifact.config.temporal.max_windows + 3
    outs = runtime.infer(windows(n, seed=3), streams=['cam'] * n)
    assert all(np.isfinite(o.depth).all() for o in outs)
    assert runtime.states['cam']['window'].item() == artifact.config.temporal.max_windows // 2 + 3


def test_onnxruntime_matches_eager_within_1e4(tiny_onnx):
    artifact = tiny_onnx  # exported once for the whole run, at the default input size
    events = windows(3, size=artifact.config.input_size, seed=5)
    ort = make_runtime(artifact, 'onnxruntime', max_batch=TINY_MAX_BATCH)
    assert not ort.built  # the exported file comes from the cache
    # ...which describes it beside it: these weights, this batch.
    described = [json.loads(p.read_text()) for p in default_cache_dir().glob('*.json')]
    assert any(d['digest'] == artifact.digest and d['max_batch'] == TINY_MAX_BATCH
               for d in described)
    cpu = make_runtime(artifact, 'cpu', max_batch=TINY_MAX_BATCH)
    for a, b in zip(ort.infer(events, streams=[0, 1, 0]), cpu.infer(events, streams=[0, 1, 0])):
        rel = np.abs(a.depth - b.depth).max() / np.abs(b.depth).max()
        assert rel < 1e-4
        assert np.mean(a.labels == b.labels) > 0.999


def test_exported_program_with_dynamic_batch_matches_eager(artifact):
    model = artifact.model
    program = export_program(model, max_batch=8)
    for b in (1, 3):
        state = model.init_state(b)
        args = (windows(b, seed=b), windows(b, seed=b + 9), torch.arange(b) % 2 == 0,
                state['keys'], state['values'], state['valid'], state['tokens'], state['window'])
        with torch.no_grad():
            eager, _ = model.step_exportable(*args)
            got = program.module()(*args)
        torch.testing.assert_close(got[0], eager['depth'][:, 0], rtol=1e-5, atol=1e-5)


def test_auto_picks_the_best_available_and_refuses_what_is_missing():
    found = available_backends()
    assert found['cpu'][0]
    assert choose_backend('auto') == ('tensorrt' if found['tensorrt'][0] else
                                      'cuda' if CUDA else 'onnxruntime')
    with pytest.raises(ValueError, match='unknown backend'):
        choose_backend('fpga')
    if not found['tensorrt'][0]:
        with pytest.raises(RuntimeError, match='needs torch_tensorrt and a CUDA GPU'):
            choose_backend('tensorrt')


def test_engine_cache_builds_once_and_never_keeps_a_half_built_file(tmp_path):
    cache = EngineCache(tmp_path / 'engines', suffix='.bin')
    builds = []

    def build(path):
        builds.append(path)
        path.write_bytes(b'engine')

    key = engine_key(digest='abc', precision='fp16', max_batch=8)
    assert cache.get_or_build(key, build, lambda p: p.read_bytes()) == (b'engine', True)
    assert cache.get_or_build(key, build, lambda p: p.read_bytes()) == (b'engine', False)
    assert len(builds) == 1

    def crash(path):
        path.write_bytes(b'half')
        raise KeyboardInterrupt

    other = engine_key(digest='abc', precision='fp32', max_batch=8)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(other, crash, lambda p: p.read_bytes())
    assert sorted(p.name for p in cache.folder.iterdir()) == [f'{key}.bin']
    assert engine_key(a=1, b=2) == engine_key(b=2, a=1) != engine_key(a=1, b=3)


@pytest.mark.skipif(not CUDA, reason='needs a CUDA GPU')
def test_cuda_runtime_matches_cpu(artifact):
    events = windows(3, seed=8)
    cuda = make_runtime(artifact, 'cuda', max_batch=4, precision='fp32')
    cpu = make_runtime(artifact, 'cpu', max_batch=4)
    for a, b in zip(cuda.infer(events, streams=[0, 0, 1]), cpu.infer(events, streams=[0, 0, 1])):
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-3, atol=1e-3)


def test_cpu_runtime_with_torch_compile_matches_eager(tmp_path):
    # TorchInductor compiles each kernel with a C++ compiler: on a cold cache (a fresh CI
    # machine) it took minutes for gep_tiny with frames. So the event-only gep_tiny, what
    # fine-tuning exports by default; the frame encoder is a second ViT of the same blocks.
    config = variant_config('gep_tiny', input_size=SIZE)
    config.temporal = replace(config.temporal, image_tokens=False)
    torch.manual_seed(2)
    artifact = load_artifact(save_artifact(GEPModel(config), tmp_path / 'events_only'))
    events = windows(2, seed=11)
    compiled = make_runtime(artifact, 'cpu', compile_step=True)
    eager = make_runtime(artifact, 'cpu')
    # Scalar C++ kernels (no SIMD variants) compile about a fifth faster on a cold cache;
    # the runtime's compile path is the same.
    from torch._inductor import config as inductor
    with inductor.patch({'cpp.vec_isa_ok': False}):
        outputs = compiled.infer(events, streams=[0, 1])
    for a, b in zip(outputs, eager.infer(events, streams=[0, 1])):
        np.testing.assert_allclose(a.depth, b.depth, rtol=1e-4, atol=1e-4)
        assert np.mean(a.labels == b.labels) > 0.999


def test_cpu_threads_leave_a_core_and_reach_torch(monkeypatch, tmp_path):
    from gep_model.runtime import cpu_threads
    monkeypatch.setattr('os.cpu_count', lambda: 8)
    assert cpu_threads(0) == 7 and cpu_threads(3) == 3
    monkeypatch.setattr('os.cpu_count', lambda: 1)
    assert cpu_threads(0) == 1
    before = torch.get_num_threads()
    try:
        torch.manual_seed(0)
        artifact = load_artifact(save_artifact(GEPModel(variant_config('gep_tiny')),
                                               tmp_path / 'tiny'))
        make_runtime(artifact, 'cpu', 1, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
