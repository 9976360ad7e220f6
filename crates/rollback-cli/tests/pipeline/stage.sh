#!/bin/sh
# A pipeline stage as the tutorial's CI example writes it: deploy a new
# version of a model (register it, point the `champion` alias at it), then
# gate on its health with `rollback watch`. The stage fails with the
# watch's exit code: 3 when the version was rolled back (the alias is back
# on the last good version), 4 when humans must look, 5 on a timeout.
#
# Environment: MLFLOW_TRACKING_URI, MODEL, ROLLBACK (the `rollback`
# command); rollback.yaml in the working directory.
set -u

echo "deploying a new version of $MODEL"
curl -sS --fail-with-body -X POST "$MLFLOW_TRACKING_URI/api/2.0/mlflow/model-versions/create" \
  -H 'Content-Type: application/json' \
  -d "{\"name\": \"$MODEL\", \"source\": \"s3://models/$MODEL/3\"}" > version.json || { cat version.json >&2; exit 1; }
VERSION=$(sed -n 's/.*"version": *"\([0-9]*\)".*/\1/p' version.json | head -n 1)
echo "registered version $VERSION; pointing alias champion at it"
curl -sS --fail-with-body -X POST "$MLFLOW_TRACKING_URI/api/2.0/mlflow/registered-models/alias" \
  -H 'Content-Type: application/json' \
  -d "{\"name\": \"$MODEL\", \"alias\": \"champion\", \"version\": \"$VERSION\"}" > /dev/null || exit 1

"$ROLLBACK" watch -c rollback.yaml --timeout 2m
status=$?
case $status in
  0) echo "stage passed: version $VERSION is healthy" ;;
  3) echo "stage failed: version $VERSION was rolled back" ;;
  *) echo "stage failed: rollback watch exited $status" ;;
esac
exit $status
