"""Ash on Hetzner Cloud as a Pulumi program: one ComponentResource per concern, assembled by stack.build()."""
