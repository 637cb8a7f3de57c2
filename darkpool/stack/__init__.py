"""Local stack: Kafka KRaft broker + Flink standalone cluster (`darkpool stack`)."""
