"""What the AWS, GCP and Hetzner stacks share: the `ash` config namespace's common settings and their checks, the
release archive the instances install from, and the secrets every instance's environment file reads."""
