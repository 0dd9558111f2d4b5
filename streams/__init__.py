"""The contract and the spine: schemas, topics, the Faust app, sinks and the `vigil` CLI."""
