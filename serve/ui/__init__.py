"""Pages for a person at the server: the try-it page (/), Swagger UI (/docs), the OpenAPI
document and the 3D viewer (gen3d.serve.ui.pages); `gen3d view` (gen3d.serve.ui.view).
SageMaker routes only /ping and /invocations, so these are for local use: `gen3d serve`
turns them on, the image only with GEN3D_UI=1."""
