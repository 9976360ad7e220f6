#!/usr/bin/env python3
"""One `rollout undo` through rollback-k8s versus `kubectl rollout undo`, each
from a fresh process, against the same test API server (kmock plus
tests/support/kube_apiserver.py), with the API calls each makes.

    cargo build --release -p rollback-k8s --example undo
    .venv/bin/python crates/rollback-k8s/benches/undo_vs_kubectl.py [--runs 30]

Every run undoes a Deployment of its own (seeded identically: three
revisions, the controller's annotations and status), so no run benefits from
another's work. kubectl is timed with a warm discovery cache (its usual state
on a workstation) and with a cold one (a fresh --cache-dir each run). Results
are printed as Markdown for BENCHMARKS.md.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
CRATE = HERE.parent
ROOT = CRATE.parent.parent


def call(url, method, path, body=None, content_type='application/json'):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={'Content-Type': content_type})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def seed(url, ns, name):
    def template(image, hash_=None):
        labels = {'app': name}
        if hash_:
            labels['pod-template-hash'] = hash_
        return {'metadata': {'labels': labels}, 'spec': {'containers': [{
            'name': 'app', 'image': image, 'resources': {}, 'imagePullPolicy': 'IfNotPresent',
            'terminationMessagePath': '/dev/termination-log', 'terminationMessagePolicy': 'File'}],
            'restartPolicy': 'Always', 'dnsPolicy': 'ClusterFirst', 'schedulerName': 'default-scheduler',
            'securityContext': {}, 'terminationGracePeriodSeconds': 30}}
    d = call(url, 'POST', f'/apis/apps/v1/namespaces/{ns}/deployments', {
        'metadata': {'name': name, 'annotations': {'deployment.kubernetes.io/revision': '3'}},
        'spec': {'replicas': 3, 'selector': {'matchLabels': {'app': name}}, 'template': template('web:3')}})
    uid = d['metadata']['uid']
    for n, h in [(1, 'aaa'), (2, 'bbb'), (3, 'ccc')]:
        call(url, 'POST', f'/apis/apps/v1/namespaces/{ns}/replicasets', {
            'metadata': {'name': f'{name}-{h}', 'labels': {'app': name, 'pod-template-hash': h},
                         'annotations': {'deployment.kubernetes.io/revision': str(n),
                                         'deployment.kubernetes.io/desired-replicas': '3',
                                         'deployment.kubernetes.io/max-replicas': '4'},
                         'ownerReferences': [{'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': name,
                                              'uid': uid, 'controller': True, 'blockOwnerDeletion': True}]},
            'spec': {'replicas': 3 if n == 3 else 0,
                     'selector': {'matchLabels': {'app': name, 'pod-template-hash': h}},
                     'template': template(f'web:{n}', h)}})
    call(url, 'PATCH', f'/apis/apps/v1/namespaces/{ns}/deployments/{name}/status',
         {'status': {'observedGeneration': 1, 'replicas': 3, 'updatedReplicas': 3, 'availableReplicas': 3}},
         'application/merge-patch+json')


def timed(cmd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = (time.perf_counter() - start) * 1000
    if out.returncode != 0 or 'rolled back' not in out.stdout:
        sys.exit(f'{cmd} failed: {out.stdout} {out.stderr}')
    return elapsed


def summary(samples):
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return f'{statistics.mean(s):.1f} | {statistics.median(s):.1f} | {s[0]:.1f} | {p95:.1f}'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=30)
    args = parser.parse_args()
    undo = ROOT / 'target/release/examples/undo'
    if not undo.exists():
        sys.exit(f'{undo} is missing: cargo build --release -p rollback-k8s --example undo')
    server = subprocess.Popen([sys.executable, str(CRATE / 'tests/support/kube_apiserver.py')],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[1])
    url = f'http://127.0.0.1:{port}'
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = pathlib.Path(tmp, 'kubeconfig')
        kubeconfig.write_text(
            f'apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {url}\n'
            'users:\n- name: u\n  user: {}\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: u\n'
            'current-context: k\n')
        env = dict(os.environ, KUBECONFIG=str(kubeconfig))
        call(url, 'POST', '/api/v1/namespaces', {'metadata': {'name': 'bench'}})
        runs = args.runs
        for i in range(runs):
            for prefix in ('crate', 'kubectl', 'cold'):
                seed(url, 'bench', f'{prefix}-{i}')
        seed(url, 'bench', 'warmup')
        seed(url, 'bench', 'calls-crate')
        seed(url, 'bench', 'calls-kubectl')
        seed(url, 'bench', 'calls-cold')
        cache = pathlib.Path(tmp, 'cache')
        kubectl = ['kubectl', '--kubeconfig', str(kubeconfig), '-n', 'bench', 'rollout', 'undo']
        timed(kubectl + ['--cache-dir', str(cache), 'deployment/warmup'])  # fills the discovery cache

        crate_ms, kubectl_ms, cold_ms = [], [], []
        for i in range(runs):
            crate_ms.append(timed([str(undo), 'bench', f'crate-{i}'], env))
            kubectl_ms.append(timed(kubectl + ['--cache-dir', str(cache), f'deployment/kubectl-{i}']))
            cold_ms.append(timed(kubectl + ['--cache-dir', str(pathlib.Path(tmp, f'cold-{i}')), f'deployment/cold-{i}']))

        def calls(cmd, cmd_env=None):
            call(url, 'DELETE', '/_test/requests')
            timed(cmd, cmd_env)
            log = call(url, 'GET', '/_test/requests')['requests']
            return [f"{r['method']} {r['path']}" + (f"?{r['query']}" if r['query'] else '') for r in log]

        crate_calls = calls([str(undo), 'bench', 'calls-crate'], env)
        kubectl_calls = calls(kubectl + ['--cache-dir', str(cache), 'deployment/calls-kubectl'])
        cold_calls = calls(kubectl + ['--cache-dir', str(pathlib.Path(tmp, 'cold-calls')), 'deployment/calls-cold'])
    server.stdin.close()
    server.wait(timeout=10)

    kv = subprocess.run(['kubectl', 'version', '--client'], capture_output=True, text=True).stdout.splitlines()[0]
    print(f'{runs} runs each, one fresh process per run; {kv}; times in ms\n')
    print('| command | mean | median | min | p95 | API calls |')
    print('|---|---|---|---|---|---|')
    print(f'| rollback-k8s `undo` example (release) | {summary(crate_ms)} | {len(crate_calls)} |')
    print(f'| `kubectl rollout undo`, warm discovery cache | {summary(kubectl_ms)} | {len(kubectl_calls)} |')
    print(f'| `kubectl rollout undo`, cold discovery cache | {summary(cold_ms)} | {len(cold_calls)} |')
    for title, log in [('rollback-k8s', crate_calls), ('kubectl, warm cache', kubectl_calls),
                       ('kubectl, cold cache', cold_calls)]:
        print(f'\nAPI calls, {title}:\n')
        for line in log:
            print(f'    {line}')


if __name__ == '__main__':
    main()
