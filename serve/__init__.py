"""Gen3D inference server: SageMaker's container contract around an image-to-3D backend."""

__version__ = "0.1.0"
