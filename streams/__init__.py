"""The contract and the spine: schemas, topics, the Faust app, the camera agent, aggregators,
sinks and the spine's own `vigil` commands (:mod:`streams.commands`)."""
