"""Every Kafka client's security options, built in one place from :class:`KafkaSettings`.

Vigil talks to Kafka through three libraries: kafka-python (the camera's producer, the topic
admin client, the dashboard's lag reader), aiokafka (reading a topic back) and Faust (the
worker and the aggregator, over aiokafka). Each client is made with ``**client_kwargs(kafka,
LIBRARY)``, so TLS and SASL (``VIGIL_KAFKA__SECURITY_PROTOCOL``, ``SASL_*``, ``SSL_*``) reach
every one of them and none can be forgotten; ``topic_configs`` gives the settings of every
topic Vigil creates (``VIGIL_KAFKA__MIN_INSYNC_REPLICAS``).

The SASL password is a ``SecretStr`` until it is handed to the client; it is never logged
(Faust's credentials print the user name only).
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from streams.errors import ConfigurationError
from streams.settings import KafkaSettings

Library = Literal["kafka-python", "aiokafka", "faust"]
LIBRARIES: tuple[Library, ...] = ("kafka-python", "aiokafka", "faust")


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of an SSL or SASL_SSL connection (None for the others): the system's
    certificate authorities, or ``ssl_cafile``'s; a client certificate when ``ssl_certfile``
    (with ``ssl_keyfile``, unless the key is in the certificate file) is set. Host names are
    checked. ConfigurationError naming the variable when a file does not load."""
    if not kafka.uses_tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=None if kafka.ssl_cafile is None else str(kafka.ssl_cafile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"bad setting VIGIL_KAFKA__SSL_CAFILE: cannot load {kafka.ssl_cafile}: {exc}"
        ) from None
    if kafka.ssl_certfile is not None:
        try:
            context.load_cert_chain(str(kafka.ssl_certfile),
                                    None if kafka.ssl_keyfile is None else str(kafka.ssl_keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                "bad setting VIGIL_KAFKA__SSL_CERTFILE / VIGIL_KAFKA__SSL_KEYFILE: cannot load "
                f"the client certificate {kafka.ssl_certfile}: {exc}") from None
    return context


def client_kwargs(kafka: KafkaSettings, library: Library) -> dict[str, Any]:
    """The security keyword arguments of a client of ``library``:

    - ``kafka-python`` (KafkaProducer, KafkaConsumer, KafkaAdminClient) and ``aiokafka``
      (AIOKafkaConsumer, AIOKafkaProducer): ``security_protocol``, and ``ssl_context``,
      ``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password`` where they apply
      (both libraries use these names for PLAIN and SCRAM);
    - ``faust`` (``faust.App``): ``broker_credentials`` — ``faust.SASLCredentials`` (with the
      TLS context under SASL_SSL), ``faust.SSLCredentials``, or None for PLAINTEXT.

    The settings were checked when they loaded (:class:`KafkaSettings`); a TLS file that does
    not load is a ConfigurationError here."""
    if library not in LIBRARIES:
        raise ConfigurationError(f"no Kafka client library {library!r}; one of {LIBRARIES}")
    context = ssl_context(kafka)
    password = None if kafka.sasl_password is None else kafka.sasl_password.get_secret_value()
    if library == "faust":
        import faust

        credentials: Any = None
        if kafka.uses_sasl:
            credentials = faust.SASLCredentials(username=kafka.sasl_username, password=password,
                                                ssl_context=context,
                                                mechanism=kafka.sasl_mechanism)
        elif context is not None:
            credentials = faust.SSLCredentials(context)
        return {"broker_credentials": credentials}
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if context is not None:
        options["ssl_context"] = context
    if kafka.uses_sasl:
        options.update(sasl_mechanism=kafka.sasl_mechanism,
                       sasl_plain_username=kafka.sasl_username,
                       sasl_plain_password=password)
    return options


def topic_configs(kafka: KafkaSettings) -> dict[str, str]:
    """Settings of every topic Vigil creates, beyond its retention."""
    return {"min.insync.replicas": str(kafka.min_insync_replicas)}
