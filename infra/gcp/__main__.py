"""Ash on Google Cloud: `pulumi up` in this folder (docs/self-hosting/gcp.md). The program is built in ash_gcp.stack."""

import sys
from pathlib import Path

# The stacks' shared package (infra/common/ash_infra) beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))

from ash_gcp.config import load_config
from ash_gcp.stack import build

build(load_config())
