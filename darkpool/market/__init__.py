"""Market data: the dark-pool simulator (`darkpool generate`), replay into Kafka
(`darkpool replay`) and plots. Entry points: `simulate.simulate`, `simulate.write`,
`replay.replay`, `plot.plot_instrument`; presets in `config.PRESETS`."""
