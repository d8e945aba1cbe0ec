"""Write the facts the sam3d adapter relies on, read from a SAM 3D Objects checkout.

    git clone https://github.com/facebookresearch/sam-3d-objects
    git -C sam-3d-objects checkout <the Dockerfile's SAM3D_OBJECTS_COMMIT>
    python tools/sam3d_contract.py --upstream sam-3d-objects \
        --out tests/fixtures/sam3d_upstream_contract.json

The checkout is parsed with `ast` only: nothing of upstream is imported or copied, so
this runs without torch, CUDA or upstream's dependencies. The JSON records signatures,
the keywords the notebook passes to `pipeline.run`, output keys, which attributes each
pipeline stage reads and whether they are `nn.Module`s, tensors held in plain
attributes, the GLB's axis rotation, the attention-backend switch and the pins of
upstream's requirement files. tests/serve/test_sam3d_contract.py checks the adapter and
the stand-in against it; re-run this after moving the pinned commit.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UPSTREAM = "facebookresearch/sam-3d-objects"
PACKAGE = "sam3d_objects"
NOTEBOOK = "notebook/inference.py"
PIPELINE = "sam3d_objects/pipeline/inference_pipeline.py"
POINTMAP = "sam3d_objects/pipeline/inference_pipeline_pointmap.py"
POSTPROCESS = "sam3d_objects/model/backbone/tdfy_dit/utils/postprocessing_utils.py"
LAYOUT_UTILS = "sam3d_objects/pipeline/layout_post_optimization_utils.py"
INFERENCE_UTILS = "sam3d_objects/pipeline/inference_utils.py"
IMG_MASK_TRANSFORMS = "sam3d_objects/data/dataset/tdfy/img_and_mask_transforms.py"
HYDRA_PATCH = "patching/hydra"
DENSE_ATTN = "sam3d_objects/model/backbone/tdfy_dit/modules/attention/__init__.py"
SPARSE_ATTN = "sam3d_objects/model/backbone/tdfy_dit/modules/sparse/__init__.py"
MESH_DECODER_CLASS = "SLatMeshDecoder"
STAGE_METHODS = ("compute_pointmap", "sample_sparse_structure", "sample_slat", "decode_slat")
REQUIREMENT_FILES = ("requirements.txt", "requirements.inference.txt", "requirements.p3d.txt")
TENSOR_FACTORIES = {"tensor", "arange", "zeros", "ones", "full", "pow", "empty", "as_tensor"}
TENSOR_METHODS = {"to", "cuda", "cpu", "float", "long", "int"}


@dataclass
class ClassInfo:
    name: str
    file: str
    line: int
    bases: list[str]
    node: ast.ClassDef
    methods: dict[str, ast.FunctionDef] = field(default_factory=dict)


def parse(root: Path, rel: str) -> ast.Module:
    return ast.parse((root / rel).read_text(encoding="utf-8"), filename=rel)


def index_classes(root: Path) -> dict[str, ClassInfo]:
    """Every class of the package and the notebook, by bare name (first definition wins)."""
    classes: dict[str, ClassInfo] = {}
    files = [*sorted((root / PACKAGE).rglob("*.py")), root / NOTEBOOK]
    for path in files:
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(parse(root, rel)):
            if isinstance(node, ast.ClassDef) and node.name not in classes:
                info = ClassInfo(
                    node.name, rel, node.lineno, [ast.unparse(b) for b in node.bases], node
                )
                info.methods = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
                classes[node.name] = info
    return classes


def is_module(name: str, classes: dict[str, ClassInfo], seen: frozenset[str] = frozenset()) -> bool:
    """True when the class derives from torch.nn.Module (through the package's classes)."""
    if name in seen or name not in classes:
        return False
    for base in classes[name].bases:
        if base in ("Module",) or base.startswith(("nn.", "torch.nn.")):
            return True
        if is_module(base.split(".")[-1], classes, seen | {name}):
            return True
    return False


def params(fn: ast.FunctionDef) -> dict[str, str | None]:
    """Parameter name -> default as source text (None: no default); self and *args dropped."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    pairs = zip(positional, defaults, strict=True)
    out = {a.arg: (ast.unparse(d) if d is not None else None) for a, d in pairs}
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out[a.arg] = ast.unparse(d) if d is not None else None
    out.pop("self", None)
    return out


def method(classes: dict[str, ClassInfo], cls: str, name: str) -> ast.FunctionDef:
    """`cls.name`, looked up through the package's base classes."""
    info = classes[cls]
    if name in info.methods:
        return info.methods[name]
    for base in info.bases:
        if base.split(".")[-1] in classes:
            try:
                return method(classes, base.split(".")[-1], name)
            except KeyError:
                continue
    raise KeyError(f"{cls}.{name}")


def where(classes: dict[str, ClassInfo], cls: str, name: str) -> str:
    fn = method(classes, cls, name)
    for info in classes.values():
        if info.methods.get(name) is fn:
            return f"{info.file}:{fn.lineno}"
    return "?"


def self_assignments(fn: ast.FunctionDef) -> dict[str, ast.expr]:
    out: dict[str, ast.expr] = {}
    for node in ast.walk(fn):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        if targets:
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    out.setdefault(target.attr, node.value)
    return out


def is_tensor_expr(value: ast.expr) -> bool:
    if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
        return False
    func = value.func
    if isinstance(func.value, ast.Name) and func.value.id == "torch":
        return func.attr in TENSOR_FACTORIES
    return func.attr in TENSOR_METHODS


def instance_class(value: ast.expr, classes: dict[str, ClassInfo]) -> str | None:
    if isinstance(value, ast.Call):
        name = ast.unparse(value.func).split(".")[-1]
        if name in classes:
            return name
    return None


def plain_tensor_holders(cls: str, classes: dict[str, ClassInfo], prefix: str) -> dict[str, Any]:
    """Attributes of a Module's __init__ that hold non-Module objects owning tensors
    (`.to()` on the Module does not reach them), recursively."""
    holders: dict[str, Any] = {}
    init = method(classes, cls, "__init__")
    for attr, value in self_assignments(init).items():
        held = instance_class(value, classes)
        if held is None or is_module(held, classes):
            continue
        path = f"{prefix}.{attr}"
        held_init = method(classes, held, "__init__")
        tensors = sorted(a for a, v in self_assignments(held_init).items() if is_tensor_expr(v))
        holders[path] = {
            "class": held,
            "defined_at": f"{classes[held].file}:{classes[held].line}",
            "is_module": False,
            "tensor_attributes": tensors,
        }
        holders.update(plain_tensor_holders(held, classes, path))
    return holders


def stage_uses(fn: ast.FunctionDef) -> list[str]:
    """Pipeline attributes a stage method reads: models[...], condition_embedders[...],
    depth_model (as "attr.key" or "attr")."""
    uses: set[str] = set()
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
            and node.value.attr in ("models", "condition_embedders")
            and isinstance(node.slice, ast.Constant)
        ):
            uses.add(f"{node.value.attr}.{node.slice.value}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr == "depth_model"
        ):
            uses.add("depth_model")
    return sorted(uses)


def restores_in_finally(fn: ast.FunctionDef, attr: str) -> bool:
    """Whether `<x>.<attr> = ...` happens inside a finally block of `fn`."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Try):
            for stmt in node.finalbody:
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.Assign) and any(
                        isinstance(t, ast.Attribute) and t.attr == attr for t in sub.targets
                    ):
                        return True
    return False


def dict_keys(node: ast.Dict) -> list[str]:
    return [k.value for k in node.keys if isinstance(k, ast.Constant)]


def inference_facts(root: Path, classes: dict[str, ClassInfo]) -> dict[str, Any]:
    tree = parse(root, NOTEBOOK)
    env_reads, env_sets = [], {}
    for node in tree.body:  # module level: runs at import
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).startswith("os.environ["):
            key = node.targets[0].slice
            env_sets[key.value] = ast.unparse(node.value)  # type: ignore[attr-defined]
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Subscript) and ast.unparse(sub.value) == "os.environ":
                    env_reads.append(sub.slice.value)  # type: ignore[attr-defined]
    call = classes["Inference"].methods["__call__"]
    run_call = next(
        n
        for n in ast.walk(call)
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "self._pipeline.run"
    )
    init = classes["Inference"].methods["__init__"]
    pipeline_attr = next(a for a in self_assignments(init) if a.endswith("pipeline"))
    return {
        "file": NOTEBOOK,
        "init_params": params(init),
        "call_params": params(call),
        "pipeline_attribute": pipeline_attr,
        "run_positional": [ast.unparse(a) for a in run_call.args],
        "run_keywords": {k.arg: ast.unparse(k.value) for k in run_call.keywords},
        "import_time_environ_required": env_reads,
        "import_time_environ_set": env_sets,
    }


def pipeline_facts(root: Path, classes: dict[str, ClassInfo]) -> dict[str, Any]:
    cls = "InferencePipelinePointMap"
    init = method(classes, "InferencePipeline", "__init__")
    assigned = self_assignments(init)
    models = assigned["models"]
    assert isinstance(models, ast.Call) and isinstance(models.args[0], ast.Dict)
    embedders = assigned["condition_embedders"]
    assert isinstance(embedders, ast.Dict)
    stages = {}
    for name in STAGE_METHODS:
        fn = method(classes, cls, name)
        stages[name] = {
            "defined_at": where(classes, cls, name),
            "params": params(fn),
            "uses": stage_uses(fn),
        }
    steps = {}
    for name, generator in (("sample_sparse_structure", "ss"), ("sample_slat", "slat")):
        fn = method(classes, cls, name)
        steps[name] = {
            "restored_in_finally": restores_in_finally(fn, "inference_steps"),
            "default_attribute": f"{generator}_inference_steps",
        }
    pointmap_init = method(classes, cls, "__init__")
    return {
        "class": cls,
        "file": POINTMAP,
        "base": classes[cls].bases,
        "init_params": {**params(init), **params(pointmap_init)},
        "run_params": params(method(classes, cls, "run")),
        "run_defined_at": where(classes, cls, "run"),
        "models": {
            "container": ast.unparse(models.func),
            "keys": dict_keys(models.args[0]),
        },
        "condition_embedders": {"container": "dict", "keys": dict_keys(embedders)},
        "depth_model_assigned_in": where(classes, cls, "__init__"),
        "stages": stages,
        "inference_steps": steps,
        "constructor_calls_cuda": "torch.cuda.current_device" in ast.unparse(init),
    }


def layout_postprocess_facts(classes: dict[str, ClassInfo]) -> dict[str, Any]:
    """run()'s layout post-optimisation: what it asserts, inside which try, and whether
    the handler lets the error out (it does not: the pose comes back unrefined)."""
    run = method(classes, "InferencePipelinePointMap", "run")
    for node in ast.walk(run):
        if not isinstance(node, ast.Try):
            continue
        for sub in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(sub, ast.Assert) and "glb" in ast.unparse(sub.test):
                guard = next(
                    ast.unparse(n.test)
                    for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                    if isinstance(n, ast.If)
                )
                return {
                    "defined_at": where(classes, "InferencePipelinePointMap", "run"),
                    "guard": guard,
                    "assert": ast.unparse(sub.test),
                    "assert_line": sub.lineno,
                    "inside_try": True,
                    "handlers": [ast.unparse(h.type) for h in node.handlers if h.type],
                    "handler_reraises": any(
                        isinstance(n, ast.Raise) for h in node.handlers for n in ast.walk(h)
                    ),
                }
    raise SystemExit("run() has no try block asserting the GLB: re-read the adapter's reason")


def mask_reduction_facts(root: Path, classes: dict[str, ClassInfo]) -> dict[str, Any]:
    """The reduction over masked pointmap points that raises when the mask vanishes."""
    fn = method(classes, "ObjectCentricSSI", "_compute_scale_and_shift")
    resize = next(
        ast.unparse(n)
        for n in ast.walk(fn)
        if isinstance(n, ast.Attribute) and n.attr in ("NEAREST",)
    )
    reduction = next(
        n
        for n in ast.walk(fn)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("max", "min")
        and not n.args
        and not n.keywords
    )
    return {
        "file": IMG_MASK_TRANSFORMS,
        "method": "ObjectCentricSSI._compute_scale_and_shift",
        "mask_resize": resize,
        "reduction_without_dim": ast.unparse(reduction),
        "line": reduction.lineno,
    }


def hydra_patch_facts(root: Path) -> dict[str, Any]:
    """What upstream's patching/hydra downloads over hydra/core/utils.py, and for which hydra."""
    tree = ast.parse((root / HYDRA_PATCH).read_text(encoding="utf-8"), filename=HYDRA_PATCH)
    urls = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and "://" in n.value
    ]
    versions = [
        n.comparators[0].value  # type: ignore[attr-defined]
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare) and "__version__" in ast.unparse(n.left)
    ]
    return {"file": HYDRA_PATCH, "downloads": urls, "requires_hydra": versions}


def depth_model_facts(classes: dict[str, ClassInfo]) -> dict[str, Any]:
    out = {}
    for info in classes.values():
        if info.file.startswith("sam3d_objects/pipeline/depth_models/"):
            init = method(classes, info.name, "__init__")
            out[info.name] = {
                "defined_at": f"{info.file}:{info.line}",
                "is_module": is_module(info.name, classes),
                "attributes": sorted(self_assignments(init)),
            }
    return out


def output_facts(root: Path, classes: dict[str, ClassInfo]) -> dict[str, Any]:
    post = method(classes, "InferencePipelinePointMap", "postprocess_slat_output")
    post_keys = sorted(
        {
            t.slice.value
            for n in ast.walk(post)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
        }
    )
    run = method(classes, "InferencePipelinePointMap", "run")
    run_keys = sorted(
        {
            k
            for n in ast.walk(run)
            if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict)
            for k in dict_keys(n.value)
        }
    )
    pose_keys: list[str] = []
    scale_expr = ""
    for node in ast.walk(parse(root, INFERENCE_UTILS)):
        if isinstance(node, ast.FunctionDef) and node.name == "pose_decoder":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and isinstance(sub.value, ast.Dict):
                    pose_keys = dict_keys(sub.value)
                    scale_expr = ast.unparse(sub.value.values[pose_keys.index("scale")])
    return {
        "postprocess_keys": post_keys,
        "run_return_keys": run_keys,
        "pose_keys": pose_keys,
        "pose_scale_is_isotropic": ".mean(-1" in scale_expr,
    }


def matmul_matrix(root: Path, rel: str, func: str) -> dict[str, Any]:
    for node in ast.walk(parse(root, rel)):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            for sub in ast.walk(node):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.MatMult):
                    right = sub.right
                    transposed = isinstance(right, ast.Attribute) and right.attr == "T"
                    if transposed:
                        right = right.value  # type: ignore[attr-defined]
                    if isinstance(right, ast.Call) and ast.unparse(right.func) == "np.array":
                        return {
                            "at": f"{rel}:{sub.lineno}",
                            "function": func,
                            "operand": ast.unparse(sub.left),
                            "matrix": ast.literal_eval(right.args[0]),
                            "transposed": transposed,
                        }
    raise ValueError(f"no `x @ np.array(...)` in {rel}:{func}")


def attention_facts(root: Path) -> dict[str, Any]:
    tree = parse(root, PIPELINE)
    fn = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "set_attention_backend"
    )
    names = sorted(
        n.left.value
        for n in ast.walk(fn)
        if isinstance(n, ast.Compare)
        and isinstance(n.ops[0], ast.In)
        and isinstance(n.left, ast.Constant)
    )
    env = sorted(
        {
            t.slice.value
            for n in ast.walk(fn)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
        }
    )
    # gpu_name is assigned only under `if torch.cuda.is_available()` and read after it
    guarded = any(
        isinstance(n, ast.If)
        and "cuda.is_available" in ast.unparse(n.test)
        and not n.orelse
        and any(
            isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "gpu_name" for s in n.body
        )
        for n in fn.body
    )
    called_at_import = any(
        isinstance(n, ast.Expr) and ast.unparse(n.value) == "set_attention_backend()"
        for n in tree.body
    )

    def accepted(rel: str, var: str) -> list[str]:
        for node in ast.walk(parse(root, rel)):
            if isinstance(node, ast.List) and all(isinstance(e, ast.Constant) for e in node.elts):
                values = [e.value for e in node.elts]
                if "sdpa" in values and "xformers" in values:
                    return values
        raise ValueError(f"no backend list for {var} in {rel}")

    return {
        "defined_at": f"{PIPELINE}:{fn.lineno}",
        "called_at_import": called_at_import,
        "flash_attn_gpu_name_substrings": names,
        "environment_set": env,
        "gpu_name_unbound_without_cuda": guarded,
        "dense_backends": accepted(DENSE_ATTN, "ATTN_BACKEND"),
        "sparse_backends": accepted(SPARSE_ATTN, "SPARSE_ATTN_BACKEND"),
    }


def package_init_facts(root: Path) -> dict[str, Any]:
    tree = parse(root, f"{PACKAGE}/__init__.py")
    imports = [alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names]
    guard = [ast.unparse(n.test) for n in ast.walk(tree) if isinstance(n, ast.If)]
    return {
        "imports": imports,
        "guards": guard,
        "imported_modules_exist": {
            name: (root / (name.replace(".", "/") + ".py")).is_file()
            or (root / name.replace(".", "/") / "__init__.py").is_file()
            for name in imports
            if name.startswith(PACKAGE)
        },
    }


def requirement_pins(root: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for rel in REQUIREMENT_FILES:
        pins: dict[str, str] = {}
        for line in (root / rel).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if " @ " in line:
                name, _, spec = line.partition(" @ ")
                pins[name.strip().lower()] = spec.strip()
            else:
                name, sep, version = line.partition("==")
                pins[name.strip().lower()] = version.strip() if sep else ""
        out[rel] = pins
    return out


def commit_of(root: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(f"{root} is not a git checkout: pass --commit") from None


def contract(root: Path, commit: str) -> dict[str, Any]:
    classes = index_classes(root)
    mesh_prefix = "models.slat_decoder_mesh"
    return {
        "upstream": UPSTREAM,
        "commit": commit,
        "generated_by": "tools/sam3d_contract.py",
        "refresh": "python tools/sam3d_contract.py --upstream PATH/TO/sam-3d-objects "
        "--out tests/fixtures/sam3d_upstream_contract.json",
        "inference": inference_facts(root, classes),
        "pipeline": pipeline_facts(root, classes),
        "depth_models": depth_model_facts(classes),
        "layout_postprocess": layout_postprocess_facts(classes),
        "mask_reduction": mask_reduction_facts(root, classes),
        "hydra_patch": hydra_patch_facts(root),
        "module_classes": {
            name: is_module(name, classes)
            for name in ("EmbedderFuser", MESH_DECODER_CLASS, "SLatGaussianDecoder", "Dino")
        },
        "mesh_decoder_plain_tensors": plain_tensor_holders(
            MESH_DECODER_CLASS, classes, mesh_prefix
        ),
        "outputs": output_facts(root, classes),
        "glb_rotation": matmul_matrix(root, POSTPROCESS, "to_glb"),
        "layout_mesh_rotation": matmul_matrix(root, LAYOUT_UTILS, "get_mesh"),
        "attention": attention_facts(root),
        "package_init": package_init_facts(root),
        "requirements": requirement_pins(root),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="sam-3d-objects checkout")
    parser.add_argument("--commit", help="commit id of the checkout (default: git rev-parse)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: stdout)")
    args = parser.parse_args(argv)
    if not (args.upstream / NOTEBOOK).is_file():
        parser.error(f"{args.upstream} has no {NOTEBOOK}: not a sam-3d-objects checkout")
    text = json.dumps(contract(args.upstream, commit_of(args.upstream, args.commit)), indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
