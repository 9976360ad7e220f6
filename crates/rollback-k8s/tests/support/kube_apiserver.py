#!/usr/bin/env python3
"""A Kubernetes API server for the rollback-k8s tests.

It is PyPI's ``kmock`` (an in-memory Kubernetes API mock) with the apiserver
semantics the tests need and kmock 0.8 lacks. kmock serves discovery (with its
bundled resource list, so ``kubectl`` maps ``deployment/NAME``) and the HTTP
plumbing; this extension serves Namespaces, Deployments, ReplicaSets,
StatefulSets, DaemonSets, ControllerRevisions, Pods,
Leases and ConfigMaps itself (a PUT or PATCH carrying a stale
``metadata.resourceVersion`` is a 409 Conflict, as leader election and the
ConfigMap state store rely on), because kmock 0.8's emulator (checked against its sources and by
requests):

* keeps no ``uid``, ``resourceVersion``, ``generation`` or
  ``creationTimestamp``, so there is no optimistic concurrency (409 Conflict)
  and no ``observedGeneration`` to wait for;
* ignores ``labelSelector`` (kubectl lists ReplicaSets by the Deployment's
  selector) and ``dryRun=All`` (a dry-run PATCH is stored);
* serves no ``/status`` subresource and no PUT (both 404);
* answers lists without ``kind``/``apiVersion`` (kubectl fails with "Object
  'Kind' is missing") and creations with 200 instead of 201;
* fails with 500 on ``/api/v1/namespaces`` (its path parser takes
  ``namespaces`` for the namespace marker) and does not check that a
  namespace exists;
* answers a failing JSON patch operation with 500 instead of 422.

Its PATCH itself is fine (a list body is applied as a JSON patch, a dict body
as a merge patch with null deleting), but it picks the kind of patch by the
body's shape, not by the content type.

A strategic merge patch is a JSON merge patch that also obeys the
``$patch: replace`` and ``$patch: delete`` directives in maps (what ``kubectl
rollout undo`` of a StatefulSet or DaemonSet sends: the ControllerRevision's
``{"spec": {"template": {"$patch": "replace", ...}}}``); any other directive
(``$retainKeys``, ``$setElementOrder/…``, ``$deleteFromPrimitiveList/…``) is a
422 naming it, and lists are replaced, not merged by their patch merge keys. A
ControllerRevision's ``data`` is kept raw (nulls included, as the apiserver
keeps a RawExtension), and every answer is compact JSON, as the apiserver's Go
encoder writes it, so ``kubectl`` can compare a revision's bytes with its own
encoding of the current template (how it decides "skipped rollback").

What it still does not do (the tests do not need it): watch bookmarks, server-side
apply, field selectors other than ``metadata.name`` and ``metadata.namespace``,
validation and defaulting, admission, garbage collection, and any controller: the tests play the Deployment,
StatefulSet and DaemonSet controllers themselves.

Test-only control endpoints, under ``/_test/``:

* ``GET /_test/requests`` lists the API requests served so far (method, path,
  query, content type, authorization header, body); ``DELETE /_test/requests`` forgets them.
* ``POST /_test/faults`` adds a rule ``{"verb", "resource", "namespace", "name",
  "subresource", "count", "status", "reason", "message", "mutate"}``. Matching
  requests (each field optional; ``count`` absent means forever) either fail
  with ``status`` (a Kubernetes ``Status``; 403 gets the apiserver's RBAC
  message), or, with ``mutate`` (a JSON merge patch), first have the stored
  object changed by a concurrent writer and are then served normally.
  ``DELETE /_test/faults`` removes all rules.

It prints ``READY <port>`` on stdout once it listens on 127.0.0.1, and exits
when its stdin closes, so it never outlives the test process that started it.
"""

import argparse
import asyncio
import copy
import datetime
import json
import os
import sys
import threading
import traceback
import uuid

import aiohttp.web
import jsonpatch
import kmock

# (group, version, plural) -> (kind, namespaced, has generation)
MANAGED = {
    ('apps', 'v1', 'deployments'): ('Deployment', True, True),
    ('apps', 'v1', 'replicasets'): ('ReplicaSet', True, True),
    ('', 'v1', 'pods'): ('Pod', True, False),
    ('', 'v1', 'namespaces'): ('Namespace', False, False),
    # StatefulSets and DaemonSets keep their history in ControllerRevisions
    ('apps', 'v1', 'statefulsets'): ('StatefulSet', True, True),
    ('apps', 'v1', 'daemonsets'): ('DaemonSet', True, True),
    ('apps', 'v1', 'controllerrevisions'): ('ControllerRevision', True, False),
    # leader election (coordination.k8s.io/v1 Lease) and the shared state store
    ('coordination.k8s.io', 'v1', 'leases'): ('Lease', True, False),
    ('', 'v1', 'configmaps'): ('ConfigMap', True, False),
}


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def response(self):
        return json_response({
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
            'message': self.message, 'reason': self.reason, 'details': self.details, 'code': self.code,
        }, status=self.code)


def qualified(group, plural):
    return f'{plural}.{group}' if group else plural


def parse_api_path(path):
    """(group, version, plural, namespace, name, subresource) or None for non-resource paths."""
    parts = [p for p in path.split('/') if p]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == 'namespaces':
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, '/'.join(rest[2:]) or None
    return group, version, plural, namespace, name, sub


def split_selector(text):
    """Split a label selector on the commas that are not inside parentheses."""
    terms, depth, cur = [], 0, ''
    for ch in text:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            terms.append(cur.strip())
            cur = ''
        else:
            cur += ch
    if cur.strip():
        terms.append(cur.strip())
    return terms


def selector_matches(selector, labels):
    labels = labels or {}
    for term in split_selector(selector or ''):
        words = term.replace('(', ' ( ').replace(')', ' ) ').split()
        if len(words) >= 3 and words[1] in ('in', 'notin'):
            values = {v.strip() for v in ' '.join(words[2:]).strip('() ').split(',') if v.strip()}
            present = words[0] in labels and labels[words[0]] in values
            if (words[1] == 'in') != present:
                return False
        elif '!=' in term:
            key, value = (s.strip() for s in term.split('!=', 1))
            if labels.get(key) == value:
                return False
        elif '=' in term:
            key, value = (s.strip() for s in term.replace('==', '=').split('=', 1))
            if labels.get(key) != value:
                return False
        elif term.startswith('!'):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_labels(obj):
    """The fields a ``fieldSelector`` may name (``kubectl rollout status`` lists by ``metadata.name``)."""
    meta = obj.get('metadata', {})
    return {'metadata.name': meta.get('name'), 'metadata.namespace': meta.get('namespace')}


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def drop_nulls(value):
    """The apiserver decodes into typed objects: explicit nulls vanish (e.g. creationTimestamp: null)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def sorted_keys(value):
    """A JSON value with every map in sorted key order."""
    if isinstance(value, dict):
        return {k: sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(v) for v in value]
    return value


def typed(plural, value):
    """``drop_nulls``, but a ControllerRevision's ``data`` (a RawExtension) is kept as written, nulls
    included, with its maps in sorted key order: the StatefulSet and DaemonSet controllers write it with
    Go's encoder from a map, which sorts keys, and kubectl compares those bytes with its own encoding
    (so whether a client's JSON library keeps insertion order must not matter)."""
    if plural == 'controllerrevisions' and isinstance(value, dict) and 'data' in value:
        data = value['data']
        value = drop_nulls({k: v for k, v in value.items() if k != 'data'})
        value['data'] = sorted_keys(data)
        return value
    return drop_nulls(value)


def json_response(obj, status=200):
    """A JSON answer, compact as the apiserver's Go encoder writes it (key order kept)."""
    return aiohttp.web.json_response(obj, status=status, dumps=lambda o: json.dumps(o, separators=(',', ':')))


DELETED = object()


def strategic_merge_patch(target, patch):
    """A JSON merge patch obeying ``$patch: replace`` and ``$patch: delete`` in maps."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    directive = patch.pop('$patch', None)
    if directive == 'delete':
        return DELETED
    if directive not in (None, 'replace'):
        raise ApiError(422, 'Invalid', f'the rollback-k8s test server does not support the strategic merge patch directive $patch: {directive}')
    for key in patch:
        if key.startswith('$'):
            raise ApiError(422, 'Invalid', f'the rollback-k8s test server does not support the strategic merge patch directive {key}')
    result = {} if directive == 'replace' or not isinstance(target, dict) else copy.deepcopy(target)
    for key, value in patch.items():
        merged = None if value is None else strategic_merge_patch(result.get(key), value)
        if merged is None or merged is DELETED:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def now():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class Store(dict):
    """The objects, recording each write and deletion as a watch event (``ApiServer.watch``)."""

    def __init__(self, server):
        super().__init__()
        self.server = server
        self.events = []  # (resourceVersion, type, plural, namespace, object), oldest first
        self.changed = asyncio.Event()

    def _event(self, kind, key, obj):
        rv = int(obj.get('metadata', {}).get('resourceVersion') or 0)
        self.events.append((rv, kind, key[0], key[1], copy.deepcopy(obj)))
        del self.events[:-10000]
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def __setitem__(self, key, obj):
        kind = 'MODIFIED' if key in self else 'ADDED'
        super().__setitem__(key, obj)
        self._event(kind, key, obj)

    def __delitem__(self, key):
        obj = copy.deepcopy(self[key])
        super().__delitem__(key)
        obj.setdefault('metadata', {})['resourceVersion'] = self.server.next_rv()
        self._event('DELETED', key, obj)


def fields_match(selector, obj):
    """A ``fieldSelector`` of ``metadata.name`` and ``metadata.namespace`` terms (``=``, ``==``, ``!=``)."""
    meta = obj.get('metadata', {})
    fields = {'metadata.name': meta.get('name'), 'metadata.namespace': meta.get('namespace')}
    for term in (selector or '').split(','):
        term = term.strip()
        if not term:
            continue
        negated = '!=' in term
        key, value = (x.strip() for x in term.replace('!=', '=').replace('==', '=').split('=', 1))
        if key not in fields:
            raise ApiError(400, 'BadRequest', f'field label not supported by the rollback-k8s test server: {key}')
        if (fields[key] == value) == negated:
            return False
    return True


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator (discovery) with the managed resources served by ``serve_managed``."""

    def setup(self):
        self.store = Store(self)  # (plural, namespace, name) -> object
        self.rv = 1000
        self.log = []
        self.faults = []

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    async def __call__(self, raw):
        # Intercepted before kmock parses the request: kmock 0.8's path parser fails
        # on `/api/v1/namespaces` (a ValueError in parse_path, answered as a 500).
        path = raw.path
        try:
            if path.startswith('/_test/'):
                return await self.control(raw, path)
            body = await raw.read()
            self.log.append({'method': raw.method, 'path': path, 'query': raw.query_string,
                             'content_type': raw.headers.get('Content-Type', ''),
                             'authorization': raw.headers.get('Authorization', ''),
                             'body': body.decode('utf-8', 'replace')})
            parsed = parse_api_path(path)
            if parsed is not None and (parsed[0], parsed[1], parsed[2]) in MANAGED:
                return await self.serve_managed(raw, parsed)
        except ApiError as e:
            return e.response()
        except Exception as e:  # a bug here: say so loudly, on stderr and to the client
            traceback.print_exc(file=sys.stderr)
            return ApiError(500, 'InternalError', f'test server bug: {e!r}').response()
        return await super().__call__(raw)

    # --- control ----------------------------------------------------------------

    async def control(self, raw, path):
        if path == '/_test/requests':
            if raw.method == 'DELETE':
                self.log.clear()
            return json_response({'requests': self.log})
        if path == '/_test/faults':
            if raw.method == 'DELETE':
                self.faults.clear()
            elif raw.method == 'POST':
                self.faults.append(json.loads(await raw.read()))
            return json_response({'faults': self.faults})
        raise ApiError(404, 'NotFound', f'unknown control endpoint {path}')

    def fault_for(self, verb, plural, namespace, name, sub):
        for rule in self.faults:
            if rule.get('count') == 0:
                continue
            wanted = {'verb': verb, 'resource': plural, 'namespace': namespace, 'name': name, 'subresource': sub}
            if all(rule.get(k) in (None, v) for k, v in wanted.items()):
                if rule.get('count') is not None:
                    rule['count'] -= 1
                return rule
        return None

    # --- resources ----------------------------------------------------------------

    async def serve_managed(self, raw, parsed):
        group, version, plural, namespace, name, sub = parsed
        kind, namespaced, _ = MANAGED[(group, version, plural)]
        params = raw.query
        method = raw.method
        if method == 'GET' and params.get('watch') in ('true', '1'):
            verb = 'watch'
        elif method == 'GET':
            verb = 'get' if name else 'list'
        else:
            verb = {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch', 'DELETE': 'delete'}.get(method, method.lower())

        rule = self.fault_for(verb, plural, namespace, name, sub)
        if rule is not None and rule.get('mutate') is not None:
            key = (plural, namespace, name)
            if key in self.store:
                changed = drop_nulls(merge_patch(self.store[key], rule['mutate']))
                changed['metadata']['resourceVersion'] = self.next_rv()
                self.bump_generation(self.store[key], changed, plural)
                self.store[key] = changed
        elif rule is not None:
            status = int(rule.get('status', 500))
            message = rule.get('message')
            if message is None and status == 403:
                what = f'{qualified(group, plural)} "{name}"' if name else qualified(group, plural)
                res = f'{plural}/{sub}' if sub else plural
                where = f' in the namespace "{namespace}"' if namespace else ' at the cluster scope'
                message = (f'{what} is forbidden: User "system:anonymous" cannot {verb} resource "{res}" '
                           f'in API group "{group}"{where}')
            raise ApiError(status, rule.get('reason', 'Forbidden' if status == 403 else 'InternalError'),
                           message or f'injected failure {status}',
                           {'name': name, 'group': group, 'kind': plural})

        if namespaced and namespace is None and verb != 'list':
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if verb == 'watch':
            return await self.watch(raw, plural, namespace, params)
        dry_run = params.get('dryRun') == 'All'
        if verb == 'list':
            return self.list(group, version, plural, kind, namespace, params.get('labelSelector'), params.get('fieldSelector'))
        if verb == 'create':
            return self.create(group, version, plural, kind, namespaced, namespace, json.loads(await raw.read()), dry_run)
        key = (plural, namespace, name)
        current = self.store.get(key)
        if current is None:
            raise ApiError(404, 'NotFound', f'{qualified(group, plural)} "{name}" not found',
                           {'name': name, 'group': group, 'kind': plural})
        if verb == 'get':
            return json_response(current)
        if verb == 'delete':
            if not dry_run:
                del self.store[key]
            return json_response(current)
        body = await raw.read()
        if verb == 'update':
            desired = json.loads(body)
        elif verb == 'patch':
            desired = self.apply_patch(current, raw.headers.get('Content-Type', ''), body)
        else:
            raise ApiError(405, 'MethodNotAllowed', f'{method} is not supported on {path_of(parsed)}')
        return self.write(group, plural, key, current, typed(plural, desired), sub, verb, dry_run)

    async def watch(self, raw, plural, namespace, params):
        """A watch: JSON lines of ``{"type", "object"}`` after ``resourceVersion``
        (from the start, the matching objects as ADDED), filtered by namespace,
        ``labelSelector`` and ``fieldSelector``, until ``timeoutSeconds`` or the
        client goes away. No bookmarks; a ``resourceVersion`` older than the
        events kept is 410 Gone, as the apiserver answers a compacted one."""
        since = params.get('resourceVersion') or '0'
        try:
            since = int(since)
        except ValueError:
            raise ApiError(400, 'BadRequest', f'invalid resourceVersion {since!r}')
        labels, fields = params.get('labelSelector'), params.get('fieldSelector')
        events = self.store.events

        def wanted(ev_plural, ev_ns, obj):
            return (ev_plural == plural and (namespace is None or ev_ns == namespace)
                    and selector_matches(labels, obj.get('metadata', {}).get('labels'))
                    and fields_match(fields, obj))

        if since and events and since < events[0][0] - 1 and len(events) >= 10000:
            raise ApiError(410, 'Expired', f'too old resource version: {since}')
        pending = []
        if since == 0:
            pending = [('ADDED', obj) for (p, ns, _), obj in sorted(self.store.items()) if wanted(p, ns, obj)]
            since = self.rv
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get('timeoutSeconds') or 1800)
        try:
            while True:
                for kind, obj in pending:
                    line = json.dumps({'type': kind, 'object': obj}, separators=(',', ':'))
                    await response.write(line.encode() + b'\n')
                changed = self.store.changed
                pending = []
                for rv, kind, ev_plural, ev_ns, obj in events:
                    if rv > since and wanted(ev_plural, ev_ns, obj):
                        pending.append((kind, obj))
                if events:
                    since = max(since, events[-1][0])
                if pending:
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), timeout=left)
                except asyncio.TimeoutError:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    def list(self, group, version, plural, kind, namespace, selector, fields=None):
        items = [copy.deepcopy(obj) for (p, ns, _), obj in sorted(self.store.items())
                 if p == plural and (namespace is None or ns == namespace)
                 and selector_matches(selector, obj.get('metadata', {}).get('labels'))
                 and selector_matches(fields, field_labels(obj))]
        for item in items:  # the apiserver leaves kind/apiVersion out of list items
            item.pop('kind', None)
            item.pop('apiVersion', None)
        return json_response({
            'kind': f'{kind}List', 'apiVersion': f'{group}/{version}' if group else version,
            'metadata': {'resourceVersion': str(self.rv)}, 'items': items,
        })

    def create(self, group, version, plural, kind, namespaced, namespace, obj, dry_run):
        meta = obj.setdefault('metadata', {})
        if namespaced:
            if meta.get('namespace') not in (None, namespace):
                raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            if ('namespaces', None, namespace) not in self.store:
                raise ApiError(404, 'NotFound', f'namespaces "{namespace}" not found',
                               {'name': namespace, 'kind': 'namespaces'})
            meta['namespace'] = namespace
        name = meta.get('name')
        if not name and meta.get('generateName'):
            name = meta['generateName'] + uuid.uuid4().hex[:5]
            meta['name'] = name
        if not name:
            raise ApiError(422, 'Invalid', f'{kind} "" is invalid: metadata.name: Required value: name or generateName is required')
        key = (plural, namespace if namespaced else None, name)
        if key in self.store:
            raise ApiError(409, 'AlreadyExists', f'{qualified(group, plural)} "{name}" already exists',
                           {'name': name, 'group': group, 'kind': plural})
        obj['kind'] = kind
        obj['apiVersion'] = f'{group}/{version}' if group else version
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now()
        meta['resourceVersion'] = self.next_rv()
        if MANAGED[(group, version, plural)][2]:
            meta['generation'] = 1
        obj.pop('status', None)  # status is written through the status subresource only
        obj = typed(plural, obj)
        if not dry_run:
            self.store[key] = obj
        return json_response(obj, status=201)

    def apply_patch(self, current, content_type, body):
        content_type = content_type.split(';')[0].strip()
        try:
            patch = json.loads(body)
        except ValueError as e:
            raise ApiError(400, 'BadRequest', f'error decoding patch: {e}')
        if content_type == 'application/json-patch+json':
            try:
                return jsonpatch.JsonPatch(patch).apply(copy.deepcopy(current))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: {e}')
        if content_type == 'application/merge-patch+json':
            return merge_patch(current, patch)
        if content_type == 'application/strategic-merge-patch+json':
            return strategic_merge_patch(current, patch)
        raise ApiError(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format: {content_type}')

    def write(self, group, plural, key, current, desired, sub, verb, dry_run):
        if not isinstance(desired, dict):
            raise ApiError(400, 'BadRequest', 'the object must be a JSON object')
        meta = desired.setdefault('metadata', {})
        wanted_rv = meta.get('resourceVersion')
        if wanted_rv not in (None, '') and wanted_rv != current['metadata']['resourceVersion']:
            raise ApiError(409, 'Conflict',
                           f'Operation cannot be fulfilled on {qualified(group, plural)} "{key[2]}": '
                           'the object has been modified; please apply your changes to the latest version and try again',
                           {'name': key[2], 'group': group, 'kind': plural})
        if sub == 'status':
            result = copy.deepcopy(current)
            if 'status' in desired:
                result['status'] = desired['status']
            else:
                result.pop('status', None)
        elif sub is None:
            result = desired
            if 'status' in current:
                result['status'] = copy.deepcopy(current['status'])
            else:
                result.pop('status', None)
            for field in ('uid', 'creationTimestamp', 'name', 'namespace', 'generation'):
                if field in current['metadata']:
                    result['metadata'][field] = current['metadata'][field]
            result['kind'], result['apiVersion'] = current['kind'], current['apiVersion']
        else:
            raise ApiError(404, 'NotFound', f'the server could not find the requested resource ({sub})')
        if result == current:  # a no-op write keeps the resourceVersion
            return json_response(current)
        self.bump_generation(current, result, plural)
        result['metadata']['resourceVersion'] = str(self.rv + 1)
        if not dry_run:
            self.next_rv()
            self.store[key] = result
        return json_response(result)

    @staticmethod
    def bump_generation(current, result, plural):
        if plural in ('deployments', 'replicasets', 'statefulsets', 'daemonsets') and current.get('spec') != result.get('spec'):
            result['metadata']['generation'] = current['metadata'].get('generation', 1) + 1


def path_of(parsed):
    return '/'.join(p for p in parsed if p)


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    handler = ApiServer()
    handler.setup()
    handler.resources.load_bundled()
    async with handler, kmock.Server(handler) as server:
        print(f'READY {server.port}', flush=True)
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
        await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main())
