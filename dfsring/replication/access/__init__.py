"""Identity and access: API keys and buckets in replicated system tables, secrets sealed at
rest, a bounded cache on every node, and the operations the admin API calls (issue 18).

- ``secretbox``: AES-256-GCM sealing of key secrets under a key derived from the cluster
  secret;
- ``tables``: quorum reads and read-modify-writes of the records (dfsring.core.accessrecords
  says how siblings merge);
- ``service``: authentication against the cache, with the freshness bounds of
  dfsring.core.ttlcache, and the admin operations, which tell every member to drop what they
  changed (the ``access-changed`` peer message, ``replica``).
"""
