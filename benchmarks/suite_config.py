"""The fields every benchmark suite's configuration shares, declared once.

`gen3d bench` builds each suite's config from the flags of the same names
(gen3d.cli.commands.bench), so a field added here is a flag for every suite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gen3d.serve.settings import Settings


@dataclass(kw_only=True)
class SuiteConfig:
    backend: str = "silhouette"
    size: str = "tiny"  # proxy only: tiny (CPU) or full (GPU-sized)
    device: str = "cpu"
    model_dir: Path | None = None  # None: a model is prepared (proxy) or none is needed
    instance_type: str | None = None  # recorded with the results (GPU runs)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.size}" if self.backend == "proxy" else self.backend

    def document(self) -> dict[str, Any]:
        """The config as a results file records it (the model dir as text)."""
        doc = asdict(self)
        doc["model_dir"] = str(self.model_dir) if self.model_dir else None
        return doc


@dataclass(kw_only=True)
class ServedSuiteConfig(SuiteConfig):
    """A suite that starts real servers and sends them load."""

    precision: str = "fp32"
    levels: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_batch_size: int = 8
    max_batch_delay_ms: float = 10.0
    duration_s: float = 5.0
    max_requests: int = 300
    warmup_s: float = 1.0
    ready_timeout_s: float = 300.0
    # CPU only: intra-op threads of the server(s) (and of any in-process reference, so
    # both compute alike). The load generator shares this machine's cores; torch's
    # spinning OpenMP threads collapse when a core is taken from them, so leave it one.
    torch_threads: int | None = None

    def settings(self, model_dir: Path, **extra: Any) -> Settings:
        """Our server's settings for this suite's backend, model and batching."""
        from gen3d.benchmarks.backends import settings_for

        extra.setdefault("max_batch_delay_ms", self.max_batch_delay_ms)
        return settings_for(
            self.backend, model_dir, self.device, self.precision, self.max_batch_size, **extra
        )


@dataclass(kw_only=True)
class PeerSuiteConfig(ServedSuiteConfig):
    """A suite that also serves the backend with the peer servers (LitServe, AWS BYOC)."""

    # sync workers of the BYOC peer, each with its own model; 0: one per core, which is
    # what AWS's example (and the SageMaker toolkit's MODEL_SERVER_WORKERS) defaults to
    byoc_workers: int = 0
    # the servers not being measured are paused (SIGSTOP), so each is measured with the
    # machine to itself, as it would be deployed: idle, LitServe polls its queues and took
    # 13 % of a core from whichever server was measured beside it (gen3d.benchmarks.peers)
    pause_idle: bool = True
