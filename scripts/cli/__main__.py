"""`python -m gen3d.cli`: the same as the `gen3d` console command."""

import sys

from gen3d.cli.main import run

sys.exit(run())
