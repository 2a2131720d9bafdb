"""The command line: `dfsring` and the local-cluster launcher."""
