"""Running it locally: the demo, `make serve`, the local triggers (poller, EventBridge), and the signed-call helper."""
