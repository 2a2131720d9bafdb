"""The pure core: ring placement, clocks, quorums, membership and Merkle logic, free of I/O."""
