"""Cost model for the deployment options (gen3d cost)."""
