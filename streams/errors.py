"""Errors of the Kafka runtime, under the core's root error."""

from rings.errors import RingsError


class StreamsError(RingsError):
    """Root of errors raised by the runtime."""


class BrokerUnavailable(StreamsError):
    """The broker could not be reached within the deadline."""


class KafkaConfigError(StreamsError):
    """The Kafka connection settings (RINGS_KAFKA_*) are invalid or incomplete."""


class ConfigError(StreamsError):
    """A worker setting from the environment (RINGS_*) is invalid."""
