"""The outside world: Kafka (source, dead-letter producer, admin, broker watch), the schema
registry and Avro, the Graph API client."""
