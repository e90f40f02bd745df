"""What `modelfleet service-discovery serve` answers over HTTP: Prometheus' service
discovery of the model servers, and the controller's own metrics."""
