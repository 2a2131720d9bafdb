"""Files: large values as immutable manifests over content-addressed, replicated chunks.

An edge of the system (STYLE.md): the replicated key/value layer knows nothing of files. A file
version is a manifest (dfsring.core.manifest) stored as an ordinary key through the coordinator,
and its bytes are chunks stored by their SHA-256 on the nodes the ring assigns them to
(Garage's object model over its table and block layers).

    versions   pure: version keys, current version, retention, collectable chunks
    placement  pure: a chunk's partition, owners, read order, and what anti-entropy moves
    clock      the hybrid logical clock that names versions
    chunkstore this node's chunk files (local storage: tmp, fsync, rename, dir fsync)
    chunks     chunk replication: W of N owners, dedup by asking first, verified reads
    upload     one upload's moving parts: the cutter and the bounded chunk window
    service    upload, download, versions, delete, listing
    gc         retention and garbage collection of unreferenced chunks, in the background
    chunksync  anti-entropy and scrubbing of chunks: every chunk on its owners, and sound
    wiring     builds the above for dfsring.node

Guarantees: an upload is visible only once all its chunks reached W replicas and its manifest
was written with W acks, so a failed or cancelled upload leaves nothing visible; concurrent
uploads of one path make distinct versions, the newest (hybrid logical clock, node id
tie-break) being current; every chunk is verified against its hash where it is read; memory is
bounded per upload and per download, independent of the file's size.
"""
