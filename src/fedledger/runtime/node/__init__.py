"""Real node processes: the same sans-IO protocol objects the simulator runs, hosted on
asyncio TCP with the wall clock (``fedledger node``), and a launcher that runs a whole
network of them on one machine (``fedledger localnet``).

Modules: ``framing`` (length-prefixed frames, drop reasons and counters), ``wire`` (the
network's own records: handshake, signed envelope, blob and chain requests),
``handshake``, ``settings`` (limits and timings), ``transport`` (connections, sessions,
queues, reconnection), ``rpc`` (request/response over the transport), ``blobs_fetch``
(chunked content-id fetch), ``sync`` (chain catch-up), ``options`` and ``host`` (one
node process: executes a protocol node's effects), ``journal`` (its metrics and status
files), ``launch`` (child processes and their clean-up) and ``localnet``. See
the README ("Run a real network").
"""
