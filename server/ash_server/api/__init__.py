"""The HTTP layer: thin routers that validate, call the domain and shape responses."""
