"""JSON logs, Prometheus metrics, process sampling, error-rate alerts, signed webhooks, Sentry."""
