"""Ash on Google Cloud: `pulumi up` in this folder (docs/self-hosting/gcp.md). The program is built in ash_gcp.stack."""

from ash_gcp.config import load_config
from ash_gcp.stack import build

build(load_config())
