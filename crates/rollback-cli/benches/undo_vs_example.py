#!/usr/bin/env python3
"""`rollback undo k8s://NS/NAME` versus rollback-k8s's `undo` example, each
from a fresh process, against the same test API server (kmock plus
rollback-k8s's tests/support/kube_apiserver.py), in one run, runs
alternating, with the API calls each makes. kubectl (warm discovery cache)
is timed too, as in rollback-k8s's own comparison, whose seeding and timing
this script reuses (crates/rollback-k8s/benches/undo_vs_kubectl.py).

    cargo build --release -p rollback-cli --bin rollback
    cargo build --release -p rollback-k8s --example undo
    .venv/bin/python crates/rollback-cli/benches/undo_vs_example.py [--runs 30]

Prints Markdown for BENCHMARKS.md: mean, median, min and p95 of each, the
ratio of the medians, the median of the pairwise ratios, and the calls.
"""

import argparse
import importlib.util
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
K8S = ROOT / 'crates/rollback-k8s'

spec = importlib.util.spec_from_file_location('undo_vs_kubectl', K8S / 'benches/undo_vs_kubectl.py')
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=30)
    args = parser.parse_args()
    cli = ROOT / 'target/release/rollback'
    undo = ROOT / 'target/release/examples/undo'
    for path, build in [(cli, 'cargo build --release -p rollback-cli --bin rollback'),
                        (undo, 'cargo build --release -p rollback-k8s --example undo')]:
        if not path.exists():
            sys.exit(f'{path} is missing: {build}')
    server = subprocess.Popen([sys.executable, str(K8S / 'tests/support/kube_apiserver.py')],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    url = f'http://127.0.0.1:{port}'
    runs = args.runs
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = pathlib.Path(tmp, 'kubeconfig')
        kubeconfig.write_text(
            f'apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {url}\n'
            'users:\n- name: u\n  user: {}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\n'
            'current-context: k\n')
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        env.pop('RUST_LOG', None)
        base.call(url, 'POST', '/api/v1/namespaces', {'metadata': {'name': 'bench'}})
        for i in range(runs):
            for prefix in ('cli', 'example', 'kubectl'):
                base.seed(url, 'bench', f'{prefix}-{i}')
        for name in ('warmup', 'calls-cli', 'calls-example'):
            base.seed(url, 'bench', name)
        cache = pathlib.Path(tmp, 'cache')
        kubectl = ['kubectl', '--kubeconfig', str(kubeconfig), '-n', 'bench', 'rollout', 'undo']
        base.timed(kubectl + ['--cache-dir', str(cache), 'deployment/warmup'])

        def rollback(name):
            return [str(cli), 'undo', f'k8s://bench/{name}']

        cli_ms, example_ms, kubectl_ms = [], [], []
        for i in range(runs):
            cli_ms.append(base.timed(rollback(f'cli-{i}'), env))
            example_ms.append(base.timed([str(undo), 'bench', f'example-{i}'], env))
            kubectl_ms.append(base.timed(kubectl + ['--cache-dir', str(cache), f'deployment/kubectl-{i}']))

        def calls(cmd):
            base.call(url, 'DELETE', '/_test/requests')
            base.timed(cmd, env)
            log = base.call(url, 'GET', '/_test/requests')['requests']
            return [f"{r['method']} {r['path']}" + (f"?{r['query']}" if r['query'] else '') for r in log]

        cli_calls = calls(rollback('calls-cli'))
        example_calls = calls([str(undo), 'bench', 'calls-example'])
    server.stdin.close()
    server.wait(timeout=10)

    kv = subprocess.run(['kubectl', 'version', '--client'], capture_output=True, text=True).stdout.splitlines()[0]
    ratio = statistics.median(cli_ms) / statistics.median(example_ms)
    pairwise = statistics.median(c / e for c, e in zip(cli_ms, example_ms))
    print(f'{runs} runs each, alternating, one fresh process per run; {kv}; times in ms\n')
    print('| command | mean | median | min | p95 | API calls |')
    print('|---|---|---|---|---|---|')
    print(f'| `rollback undo k8s://bench/NAME` (release) | {base.summary(cli_ms)} | {len(cli_calls)} |')
    print(f'| rollback-k8s `undo` example (release) | {base.summary(example_ms)} | {len(example_calls)} |')
    print(f'| `kubectl rollout undo`, warm discovery cache | {base.summary(kubectl_ms)} | 4 |')
    print(f'\nratio of the medians, rollback / example: {ratio:.2f}; median of the pairwise ratios: {pairwise:.2f}')
    same = [c.replace('calls-cli', 'NAME') for c in cli_calls] == [c.replace('calls-example', 'NAME') for c in example_calls]
    print(f'same API calls: {"yes" if same else "no"}')
    for title, log in [('rollback undo', cli_calls), ('undo example', example_calls)]:
        print(f'\nAPI calls, {title}:\n')
        for line in log:
            print(f'    {line}')


if __name__ == '__main__':
    main()
