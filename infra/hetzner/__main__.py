"""Ash on Hetzner Cloud: `pulumi up` in this folder (docs/self-hosting/hetzner.md). The program is built in
ash_hetzner.stack."""

import sys
from pathlib import Path

# The stacks' shared package (infra/common/ash_infra) beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))

from ash_hetzner.config import load_config
from ash_hetzner.stack import build

build(load_config())
