"""What one optimised variant is: precision, INT8 mode and engine, compile."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

QUANTIZE_MODES = ("none", "int8-weight", "int8-dynamic")
# torchao: quantize_ with Int8WeightOnlyConfig / Int8DynamicActivationInt8WeightConfig.
# pytorch: torch.ao.quantization.quantize_dynamic (CPU only, fp32 activations).
INT8_ENGINES = ("torchao", "pytorch")


@dataclass(frozen=True)
class Variant:
    precision: str = "fp32"
    quantize: str = "none"
    engine: str | None = None  # set for the int8 modes
    compile: bool = False

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize {self.quantize!r}: use one of {', '.join(QUANTIZE_MODES)}")
        if self.quantize == "none" and self.engine is not None:
            raise ValueError("an INT8 engine only applies with --quantize int8-*")
        if self.quantize != "none" and self.engine not in INT8_ENGINES:
            raise ValueError(f"INT8 engine {self.engine!r}: use one of {', '.join(INT8_ENGINES)}")
        if self.quantize == "int8-weight" and self.engine == "pytorch":
            raise ValueError("PyTorch's quantize_dynamic has no weight-only mode; use torchao")

    @property
    def label(self) -> str:
        parts = [self.precision]
        if self.quantize != "none":
            parts.append(f"{self.quantize}({self.engine})")
        if self.compile:
            parts.append("compile")
        return "+".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(
            precision=data["precision"],
            quantize=data.get("quantize", "none"),
            engine=data.get("engine"),
            compile=bool(data.get("compile", False)),
        )
