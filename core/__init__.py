"""The ground floor: the event contract, alert and record schemas, window features,
pure decision functions, configuration and paths. Imports nothing else from the project;
every other package (model, udfs, darkpool, jobs) stands on it."""
