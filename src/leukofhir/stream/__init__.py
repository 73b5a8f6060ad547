"""Live streams on NATS JetStream: ``serve --publish`` hands accepted messages to a stream
partitioned by patient, ``leukofhir worker --nats`` settles and writes them (README: Live
streams on NATS JetStream).  nats-py is imported only by :mod:`.jetstream`."""
