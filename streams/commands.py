"""The spine's commands: `vigil broker`, `camera`, `aggregator`, `db`, `clips`, `webhooks`
and `models` (the registered networks, and the served versions in the store).

Thin handlers over :mod:`streams` and :mod:`models`; heavy imports stay inside them so that
`vigil --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from streams.cmdline import (
    Subparsers,
    adder,
    emit,
    kafka_bootstrap,
    run_faust,
    stop_on_interrupt_or_term,
)
from streams.errors import InputError
from streams.settings import load_settings

if TYPE_CHECKING:
    from streams.camera import SourceOpener
    from streams.store import ModelVersion, Store

log = logging.getLogger("vigil")  # the command line's own voice: "INFO vigil: ..."


def cmd_broker(args: argparse.Namespace) -> int:
    import time

    from streams.broker import EmbeddedBroker

    stop_on_interrupt_or_term()
    with EmbeddedBroker(port=args.port) as broker:
        broker.create_topics()
        sys.stdout.write(f"Kafka (Tansu, in memory) on {broker.bootstrap}; Ctrl-C stops it\n")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_camera(args: argparse.Namespace) -> int:
    from streams.camera import CameraAgent, open_source
    from streams.observability import (
        REGISTRY,
        CameraCollector,
        Health,
        MetricsSettings,
        start_observability,
    )
    from streams.settings import StreamSettings, load_settings

    stop_on_interrupt_or_term()
    settings = load_settings(StreamSettings)  # all the camera reads, with its endpoints
    metrics = load_settings(MetricsSettings)
    bootstrap = kafka_bootstrap(args)
    source, live = open_source(args.source, args.fps, seed=args.seed,
                               reconnect_for_s=settings.camera.reconnect_for_s,
                               schemes=args.sources)
    agent = CameraAgent(bootstrap, args.driver, args.vehicle, args.fps, args.batch,
                        settings=settings.camera, compression=settings.kafka.compression,
                        kafka=settings.kafka)
    max_frames = round(args.seconds * args.fps) if args.seconds else None
    REGISTRY.register(CameraCollector(agent))
    health = Health("camera")
    # Alive while frames come: a live source gets its reconnection time on top.
    health.live("capture", lambda: agent.capture_problem(
        metrics.stall_s + (settings.camera.reconnect_for_s if live else 0.0)))
    health.ready("broker", agent.publish_problem)
    server = start_observability(health, metrics)
    log.info("camera %s -> %s as driver %s (vehicle %s), %.1f fps, batches of %d, session %s",
             args.source, bootstrap, args.driver, args.vehicle, args.fps, args.batch,
             agent.session)
    try:
        stats = agent.run(source, paced=not live, max_frames=max_frames)
    except KeyboardInterrupt:
        agent.stop()
        stats = agent.stats
    finally:
        if server is not None:
            server.stop()
    log.info("camera done: %s", stats)
    return 0


def cmd_aggregator(args: argparse.Namespace) -> int:
    from streams.aggregator.agent import AggregatorEnvironment, build_aggregator_app
    from streams.observability import DRIVER_SILENCE, Health, cached
    from streams.store import Store

    env = AggregatorEnvironment.load()
    store = Store.from_settings(env.database)
    store.migrate()
    app, close = build_aggregator_app(kafka_bootstrap(args), store, env.webhooks,
                                      settings=env.streams.aggregator,
                                      records=env.streams.records, clips=env.clips,
                                      kafka=env.streams.kafka)
    DRIVER_SILENCE.ttl_s = env.metrics.driver_series_ttl_s
    health = Health("aggregator")
    health.ready("store", cached(store.db.ping, 5.0))  # the sinks' database
    return run_faust(app, close, args.debug, health, env.metrics)


def cmd_db(args: argparse.Namespace) -> int:
    from streams.store import Store

    with Store.from_settings() as store:
        if args.action == "migrate":
            revision = store.migrate()
            log.info("database %s at revision %s", store.where, revision)
        else:
            emit({"database": store.where, "revision": store.check_migrated(),
                   "rows": store.row_counts()})
    return 0


def cmd_clips_purge(args: argparse.Namespace) -> int:
    from streams.event_clips import ClipSettings, purge_clips
    from streams.store import Store

    settings = load_settings(ClipSettings)
    with Store.from_settings() as store:
        store.check_migrated()
        report = purge_clips(store, settings, dry_run=args.dry_run)
    emit(report.to_dict())
    return 1 if report.failed else 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from streams.errors import InputError
    from streams.store import DeliveryStatus, Store

    # Neither action migrates: an unmigrated database is reported, not changed.
    with Store.from_settings() as store:
        store.check_migrated()
        if args.action == "list-failed":
            for d in store.deliveries.find(DeliveryStatus.FAILED, limit=args.limit):
                emit({"alert_id": d.alert_id, "endpoint": d.endpoint, "attempts": d.attempts,
                       "last_status_code": d.last_status_code, "last_error": d.last_error,
                       "created_at": d.created_at})
            return 0
        if args.all == (args.alert_id is not None):
            raise InputError("name one delivery (ALERT_ID, optionally --endpoint NAME) or "
                             "pass --all")
        count = store.deliveries.redeliver(args.alert_id, args.endpoint)
        if not count and args.alert_id is not None:
            raise InputError(f"no failed delivery of alert {args.alert_id!r}"
                             + (f" to {args.endpoint!r}" if args.endpoint else "")
                             + " (a delivered one is never sent again)")
        log.info("%d delivery(ies) pending again; running dispatchers send them within "
                 "their poll interval", count)
        emit({"redelivered": count})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from models import create_model, list_models

    if args.action is not None:
        return cmd_model_versions(args)
    for entry in list_models():
        params = sum(p.numel() for p in create_model(entry.name).parameters())
        sys.stdout.write(f"{entry.name:28s} {params / 1e6:7.2f} M params  {entry.summary}\n")
    return 0


def register_checkpoint(store: Store, name: str, path: Path, note: str | None = None
                        ) -> ModelVersion:
    """Registers the checkpoint file at ``path`` as a candidate version of ``name`` (its own
    metrics travel with it; its data hash is the file's). InputError when the file is not a
    loadable checkpoint of ``name``."""
    import hashlib

    from models.checkpoint import load_checkpoint
    from models.errors import VigilError

    try:
        blob = path.read_bytes()
        _, meta = load_checkpoint(path)
    except (OSError, VigilError) as exc:
        raise InputError(f"{path}: {exc}") from None
    if meta["name"] != name:
        raise InputError(f"{path} holds {meta['name']!r}, not {name!r}")
    return store.model_versions.register(
        name, blob, data_hash=hashlib.sha256(blob).hexdigest(), metrics=meta.get("metrics") or {},
        note=note or f"registered from {path.name}")


def cmd_model_versions(args: argparse.Namespace) -> int:
    """vigil models versions | promote VERSION | rollback: the model-version registry."""
    from dataclasses import asdict

    from streams.store import Store

    # Never migrates: listing a registry must not create a database (`vigil db migrate` does).
    with Store.from_settings() as store:
        store.check_migrated()
        if args.action == "register":
            registered = register_checkpoint(store, args.model, args.checkpoint, args.note)
            log.info("%s %s registered as a candidate: `vigil models promote %s --model %s` "
                     "serves it", args.model, registered.version, registered.version,
                     args.model)
        elif args.action == "promote":
            served = store.model_versions.promote(args.model, args.version)
            log.info("%s %s promoted; aggregators and workers serve it within their refresh "
                     "interval",
                     args.model, served.version)
        elif args.action == "rollback":
            back = store.model_versions.rollback(args.model)
            log.info("%s rolled back to %s", args.model,
                     "the shipped weights" if back is None else back.version)
        versions = store.model_versions.versions(args.model)
        if not versions:  # an empty listing would not tell a typo from an empty registry
            log.info("no versions of %r are registered: the shipped weights serve", args.model)
        for v in versions:
            f1 = v.metrics.get("held_out", {}).get("macro_f1")
            sys.stdout.write(json.dumps(asdict(v)) + "\n" if args.json else
                             f"{v.version:6s} {v.status:12s} parent {v.parent or '-':8s} "
                             f"held-out macro-F1 {'-' if f1 is None else f'{f1:.3f}'}  "
                             f"data {v.data_hash[:12]}  {v.note or ''}\n")
    return 0


def register(sub: Subparsers, sources: Mapping[str, SourceOpener] | None = None) -> None:
    """broker, camera, aggregator, db, clips, webhooks, models. ``sources``: the camera's
    source schemes beyond OpenCV's (the `vigil` command gives ``sim``, the simulator)."""
    add = adder(sub)

    p = add("broker", cmd_broker, "run the embedded Kafka broker (Tansu) in the foreground")
    p.add_argument("--port", type=int, default=9092)

    p = add("camera", cmd_camera, "publish a camera's frames to Kafka as frame batches")
    p.add_argument("--source", required=True,
                   help="video FILE, device index, RTSP/HTTP URL, or sim:PROFILE[:SEED]")
    p.add_argument("--driver", required=True)
    p.add_argument("--vehicle", required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, help="stop after this much footage")
    p.add_argument("--seed", type=int, default=0, help="simulator seed when not in --source")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")
    p.set_defaults(sources=dict(sources or {}))

    p = add("aggregator", cmd_aggregator,
            "run the aggregator and sinks: observations -> windows, alerts, store, webhooks")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")

    p = add("db", cmd_db, "database schema: migrate to the latest, or show status")
    p.add_argument("action", choices=["migrate", "status"])

    clips = add("clips", lambda a: 2, "the event clips kept behind alerts")
    clips_sub = clips.add_subparsers(dest="action", required=True)
    p = add("purge", cmd_clips_purge, "delete clips past their retention (VIGIL_CLIPS__RETENTION_"
            "DAYS, VIGIL_CLIPS__FLAGGED_RETENTION_DAYS for flagged alerts) and orphan files; "
            "prints what was done as JSON", parent=clips_sub)
    p.add_argument("--dry-run", action="store_true", help="only report what would go")

    hooks = add("webhooks", lambda a: 2, "the webhook outbox: deliveries that failed for good")
    hooks_sub = hooks.add_subparsers(dest="action", required=True)
    p = add("list-failed", cmd_webhooks, "failed deliveries as JSON Lines, oldest first "
            "(reads only)", parent=hooks_sub)
    p.add_argument("--limit", type=int, default=1000)
    p = add("redeliver", cmd_webhooks, "make failed deliveries pending again with a fresh "
            "retry schedule (delivered ones are never sent again)", parent=hooks_sub)
    p.add_argument("alert_id", nargs="?", help="the alert whose failed delivery to retry")
    p.add_argument("--endpoint", help="only to this endpoint (its configured name)")
    p.add_argument("--all", action="store_true", help="every failed delivery")

    models_cmd = add("models", cmd_models, "the registered networks with their parameter counts; "
                 "the trained versions of one (versions, promote, rollback)")
    models_sub = models_cmd.add_subparsers(dest="action")
    for action, help_ in (("versions", "registered versions, with status and held-out metrics"),
                          ("register", "store a trained checkpoint file as a candidate version"),
                          ("promote", "serve VERSION from now on (aggregators pick it up "
                           "without a restart)"),
                          ("rollback", "serve the version promoted before the current one "
                           "(or the shipped weights)")):
        p = add(action, cmd_model_versions, help_, parent=models_sub)
        if action == "promote":
            p.add_argument("version", help="v3 or 3")
        if action == "register":
            p.add_argument("checkpoint", type=Path, help="a checkpoint file (vigil train ...)")
            p.add_argument("--note")
        p.add_argument("--model", default="drowsiness-blinks",
                       help="drowsiness-blinks (aggregators), blink-eyelid-motion, satnet or "
                            "fatigue-nonlocal-r3d18 (workers, VIGIL_SERVING__NETWORKS)")
        p.add_argument("--json", action="store_true")
