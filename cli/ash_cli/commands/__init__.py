"""The commands of `ash`, one module per noun; each exposes `register(app)`."""
