"""`gep bench gpu` on the CPU: every part reports a row or its error, and the JSON says so."""

import json

import pytest

from gep_ros.bench import gpu
from gep_ros.cli.main import main

STATUSES = {'ok', 'error', 'skipped', 'unavailable'}


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp('gpu') / 'gpu.json'
    gpu.run(path, device='cpu', quick=True, variants=['gep_tiny'], sensors=['346x260'],
            batches=[1], precisions=['fp32'], input_size=(56, 84), command='test')
    return json.loads(path.read_text())


def test_json_names_the_device_and_versions(report):
    assert report['suite'] == 'gpu' and report['command'] == 'test'
    assert report['device'].startswith('cpu') and report['torch'] and 'cuda' in report
    assert set(report['part_s']) == set(gpu.PARTS)
    for row in report['rows']:
        assert row['device'] == report['device'] and row['torch'] == report['torch']
        assert row['status'] in STATUSES and row['part'] in gpu.PARTS and row['name']
        if row['status'] == 'error':
            assert row['error']
        if row['status'] in ('skipped', 'unavailable'):
            assert row['reason']


def test_every_part_produced_a_row(report):
    parts = {row['part'] for row in report['rows']}
    assert parts == set(gpu.PARTS)
    by_part = {p: [r for r in report['rows'] if r['part'] == p] for p in gpu.PARTS}
    # Here on the CPU the plumbing runs: one row per configuration, each measured.
    runtime, = by_part['runtime']
    assert runtime['status'] == 'ok' and runtime['backend'] == 'cpu' and runtime['batch'] == 1
    assert runtime['p95_ms'] >= runtime['p50_ms'] > 0 and runtime['rate'] > 0
    assert runtime['input_size'] == [56, 84]
    assert len(by_part['events']) == len(gpu.REPRESENTATIONS)
    for row in by_part['events']:
        assert row['status'] == 'ok', row
        assert row['output_device'] == 'cpu' and row['exact_vs_cpu']
    assert [r['name'].split('_')[0] for r in by_part['train']] == list(gpu.STAGES)
    for row in by_part['train']:
        assert row['status'] == 'ok', row
        assert row['rate_unit'] == 'samples/s' and row['rate'] > 0 and row['batch'] == 2
    ddp, = by_part['ddp']
    assert ddp['status'] == 'ok', ddp
    assert ddp['backend'] == 'gloo' and ddp['world_size'] == 1
    trt, = by_part['tensorrt']
    assert trt['status'] == 'unavailable' and 'CUDA GPU' in trt['reason']


def test_a_failing_configuration_is_reported_and_the_rest_runs(tmp_path, monkeypatch):
    import gep_model.events as events
    real = events.make_representation

    def broken(name, **params):
        if name == 'voxel_grid':
            raise RuntimeError('no voxels today')
        return real(name, **params)
    monkeypatch.setattr(events, 'make_representation', broken)
    rows = gpu.run(tmp_path / 'gpu.json', device='cpu', quick=True, sensors=['346x260'],
                   parts=['events', 'tensorrt'])
    status = {r['name'].split('_346')[0]: r for r in rows}
    assert status['voxel_grid']['status'] == 'error'
    assert 'RuntimeError: no voxels today' in status['voxel_grid']['error']
    assert status['polarity_rgb']['status'] == status['histogram']['status'] == 'ok'
    assert status['tensorrt']['status'] == 'unavailable'
    assert json.loads((tmp_path / 'gpu.json').read_text())['rows'] == rows


def test_bad_settings_are_one_line_errors(capsys):
    assert main(['bench', 'gpu', '--device', 'cpu', '--batches', '3']) == 2
    assert main(['bench', 'gpu', '--device', 'cpu', '--parts', 'runtime', 'nccl']) == 2
    assert main(['bench', 'gpu', '--device', 'cpu', '--input-size', '50', '84']) == 2
    assert main(['bench', 'gpu', '--device', 'tpu']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith('gep: error: ') for line in err)
    assert '--batches' in err[0] and "'nccl'" in err[1] and '--input-size' in err[2]
    assert '--device' in err[3]
