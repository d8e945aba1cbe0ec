"""The operator's toolbox: the `gen3d` command and its AWS, cost and tooling modules."""
