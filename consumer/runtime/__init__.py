"""The loop that joins core and adapters: a record's life from poll to commit, delivery, backpressure,
and the service that wires it together."""
