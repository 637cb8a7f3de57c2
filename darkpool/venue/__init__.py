"""Importers of real venue data into the event contract (`core.schemas.EVENT_SCHEMA`).

`lobster`: LOBSTER message files (NASDAQ TotalView-ITCH order messages, the standard
academic format), with the best bid/offer from the orderbook file or rebuilt from the
messages (`book`). How the absent participants are filled: README.md beside this file.
"""
