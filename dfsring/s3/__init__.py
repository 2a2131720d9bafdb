"""The S3-compatible API (issue 19): an object layer over the files layer and an S3 edge on
``--s3-port``. See dfsring.s3.model for the vocabulary both sides share, and docs/S3.md."""
