"""vaebench's harness: datasets, specs, training, evaluation, records, reports and the CLI."""
