"""Ash on AWS: `pulumi up` in this folder (docs/self-hosting/aws.md). The program is built in ash_aws.stack."""

import sys
from pathlib import Path

# The stacks' shared package (infra/common/ash_infra) beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))

from ash_aws.config import load_config
from ash_aws.stack import build

build(load_config())
