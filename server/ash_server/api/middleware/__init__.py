"""What wraps every request: request ids and metrics, the size limit, trusted proxies, signed internal traffic."""
