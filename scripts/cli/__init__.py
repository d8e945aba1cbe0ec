"""The `gen3d` console command: argparse front-ends over the packages below it."""
