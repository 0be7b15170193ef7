"""Ash on AWS: `pulumi up` in this folder (docs/self-hosting/aws.md). The program is built in ash_aws.stack."""

from ash_aws.config import load_config
from ash_aws.stack import build

build(load_config())
