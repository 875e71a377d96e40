"""HTTP and WebSocket routers: thin, typed, and free of model logic."""
