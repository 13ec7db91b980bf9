//! Kafka: embedded broker, producer, consumers, outbox relay.
