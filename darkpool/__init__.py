"""Dark-pool market-abuse surveillance: operations, data and evaluation around the Flink job."""
