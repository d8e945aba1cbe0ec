"""Build the cpu image and serve from it, with no Docker engine (`make image-test`).

Steps (each one a real tool; root is needed for debootstrap, chroot and mounts):
  1. apt-get install podman debootstrap (when missing)
  2. debootstrap --variant=minbase bookworm from the machine's own Debian mirror, then
     `podman import` it as localhost/gen3d-base (cached: skipped when the image exists)
  3. podman build --isolation=chroot --format docker of the Dockerfile, FLAVOR=cpu,
     BASE_IMAGE=BUILDER_IMAGE=localhost/gen3d-base
  4. podman image mount, an overlay on top (the image stays untouched), /proc, /dev and
     tmpfs mounts, then chroot into it as the image's USER and run the image's own
     ENTRYPOINT + CMD with the image's ENV, listening on 127.0.0.1:PORT
  5. from outside: GET /ping (200), POST /invocations with an RGBA PNG (a GLB back,
     loaded by trimesh), and checks of the image contents (torch absent, no compilers)
  6. SIGTERM, wait for a clean exit, unmount everything; print a JSON report

Behind a TLS-inspecting proxy, the host's CA bundle is bind-mounted into the build's RUN
steps through a pip config file (volumes are not committed to the image).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/gen3d-base"
IMAGE = "localhost/gen3d:cpu-test"
STORAGE = ["--storage-driver=vfs"]
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageTestError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"image-test: {message}", file=sys.stderr, flush=True)


def sh(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    return subprocess.run(list(cmd), **kwargs)


def podman(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return sh(["podman", *STORAGE, *args], **kwargs)


def ensure_tools() -> None:
    missing = [tool for tool in ("podman", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sh(["apt-get", "update", "-qq"], env=env)
    sh(
        ["apt-get", "install", "-y", "-qq", "podman", "debootstrap"],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def debian_mirror() -> str:
    """The first Debian archive URI this machine's apt uses (deb822 or one-line form)."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in candidates:
        text = path.read_text()
        for block in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", block, re.M) and "debian-security" not in block:
                match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if match:
                    return match.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == "bookworm":
                return parts[1]
    return "http://deb.debian.org/debian"


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def build_base(workdir: Path, timings: dict[str, float]) -> None:
    if image_exists(BASE_IMAGE):
        log(f"{BASE_IMAGE} exists: skipping debootstrap (--rebuild-base to redo)")
        return
    rootfs = workdir / "rootfs"
    mirror = debian_mirror()
    log(f"debootstrap --variant=minbase bookworm from {mirror}")
    start = time.monotonic()
    sh(
        ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
        stdout=subprocess.DEVNULL,
    )
    timings["debootstrap_s"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    podman("import", "-", BASE_IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
    if tar.wait() != 0:
        raise ImageTestError("tar of the debootstrap root failed")
    timings["import_s"] = round(time.monotonic() - start, 1)
    shutil.rmtree(rootfs)


def build_image(workdir: Path, timings: dict[str, float]) -> None:
    from gen3d.aws.platform import build_args

    args = build_args("cpu")
    overrides = {"BASE_IMAGE": BASE_IMAGE, "BUILDER_IMAGE": BASE_IMAGE}
    for i in range(1, len(args), 2):
        key = args[i].partition("=")[0]
        if key in overrides:
            args[i] = f"{key}={overrides[key]}"
    volumes: list[str] = []
    if HOST_CA.exists():
        pip_conf = workdir / "pip.conf"
        pip_conf.write_text("[global]\ncert = /run/gen3d-host-ca.crt\n")
        volumes = [
            "-v",
            f"{pip_conf}:/etc/pip.conf:ro",
            "-v",
            f"{HOST_CA}:/run/gen3d-host-ca.crt:ro",
        ]
    if image_exists(IMAGE):  # replaced, not left dangling (vfs keeps full copies)
        podman("rmi", "-f", IMAGE, stdout=subprocess.DEVNULL)
    log("podman build --isolation=chroot FLAVOR=cpu (about a minute)")
    start = time.monotonic()
    podman(
        "build",
        "--isolation=chroot",
        "--format",
        "docker",
        "--layers=false",
        *volumes,
        *args,
        "-t",
        IMAGE,
        str(ROOT),
    )
    timings["build_s"] = round(time.monotonic() - start, 1)


def image_config() -> dict[str, Any]:
    out = podman("image", "inspect", IMAGE, capture_output=True, text=True).stdout
    return json.loads(out)[0]


@contextmanager
def mounted_root(workdir: Path) -> Iterator[Path]:
    """The image's root, writable through an overlay, with /proc, /dev, /tmp, /dev/shm."""
    with ExitStack() as stack:
        lower = podman("image", "mount", IMAGE, capture_output=True, text=True).stdout.strip()
        stack.callback(podman, "image", "unmount", IMAGE, check=False, stdout=subprocess.DEVNULL)
        upper, work, merged = (workdir / n for n in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        sh(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)])
        stack.callback(sh, ["umount", "-l", str(merged)], check=False)
        for source, target, kind in (
            ("proc", "proc", "proc"),
            ("/dev", "dev", "bind"),
            ("tmpfs", "tmp", "tmpfs"),
            ("tmpfs", "dev/shm", "tmpfs"),
        ):
            path = merged / target
            path.mkdir(parents=True, exist_ok=True)
            cmd = (
                ["mount", "--bind", source, str(path)]
                if kind == "bind"
                else ["mount", "-t", kind, source, str(path)]
            )
            sh(cmd)
            stack.callback(sh, ["umount", "-l", str(path)], check=False)
        os.chmod(merged / "tmp", 0o1777)
        yield Path(lower), merged


def in_root(
    root: Path,
    config: dict[str, Any],
    argv: Sequence[str],
    extra_env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """argv run inside `root` as the image would run it: its USER, ENV and WORKDIR."""
    cfg = config["Config"]
    env = dict(item.split("=", 1) for item in cfg.get("Env", []))
    env.update(extra_env or {})
    user = cfg.get("User") or "0:0"
    if ":" not in user:
        user = f"{user}:{user}"
    cmd = [
        "chroot",
        f"--userspec={user}",
        str(root),
        "/usr/bin/env",
        "-i",
        *[f"{k}={v}" for k, v in env.items()],
        "/bin/sh",
        "-c",
        'cd "$0" && exec "$@"',
        cfg.get("WorkingDir") or "/",
        *argv,
    ]
    return cmd if kwargs.pop("command_only", False) else sh(cmd, **kwargs)


def check_contents(lower: Path, root: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What the final stage must and must not contain, read from the built image."""
    imports = (
        "import importlib.util as u, sys; "
        "mods = ['gen3d.serve.http.app', 'gen3d.serve.backends.silhouette', 'gen3d.cli.main', "
        "'numpy', 'scipy', 'skimage', 'PIL', 'flask', 'gunicorn', 'trimesh', 'safetensors']; "
        "[__import__(m) for m in mods]; "
        "print('torch' if u.find_spec('torch') else 'no-torch', sys.version.split()[0])"
    )
    out = in_root(
        root, config, ["python", "-c", imports], capture_output=True, text=True
    ).stdout.split()
    if out[0] != "no-torch":
        raise ImageTestError("torch is installed in the cpu image")
    compilers = [
        p
        for p in ("usr/bin/gcc", "usr/bin/cc", "usr/bin/g++", "usr/bin/make", "usr/bin/git")
        if (lower / p).exists()
    ]
    if compilers:
        raise ImageTestError(f"build tools in the final image: {compilers}")
    leftovers = [
        p
        for p in ("root/.cache/pip", "var/lib/apt/lists/partial")
        if (lower / p).exists() and any((lower / p).iterdir())
    ]
    if leftovers or any((lower / "var/lib/apt/lists").glob("*_Packages")):
        raise ImageTestError(f"caches left in the final image: {leftovers or 'apt lists'}")
    return {"python": out[1], "torch_installed": False, "compilers": []}


def rgba_png() -> bytes:
    """A 160x128 photo whose alpha is the object mask (an ellipse), as SAM 3D takes it."""
    import numpy as np
    from PIL import Image

    from gen3d.serve.backends.synthetic import photo_and_mask

    image, mask = photo_and_mask(128, width=160, ellipse=(0.5, 0.5, 55 / 160, 40 / 128))
    buf = io.BytesIO()
    Image.fromarray(np.dstack([image, mask.astype(np.uint8) * 255]), "RGBA").save(buf, "PNG")
    return buf.getvalue()


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve_and_query(
    root: Path, config: dict[str, Any], port: int, timeout_s: float
) -> dict[str, Any]:
    import requests
    import trimesh

    cfg = config["Config"]
    argv = [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "GEN3D_BIND_HOST": "127.0.0.1"}
    cmd = in_root(root, config, argv, extra_env=env, command_only=True)
    if port_in_use(port):  # else /ping could be answered by some other server
        raise ImageTestError(f"127.0.0.1:{port} is in use already")
    log(f"chroot {root} {' '.join(argv)} on 127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result: dict[str, Any] = {"argv": argv}
    try:
        while True:
            if server.poll() is not None:
                raise ImageTestError(
                    f"server exited ({server.returncode}):\n{server.stdout.read()}"
                )
            try:
                ping = requests.get(f"{base}/ping", timeout=2)
                if ping.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - started > timeout_s:
                raise ImageTestError(f"/ping not 200 within {timeout_s:.0f} s")
            time.sleep(0.5)
        result["ready_s"] = round(time.monotonic() - started, 1)
        result["ping_status"] = ping.status_code
        # the image's serve puts nginx before gunicorn (gen3d.serve.process.front)
        result["front"] = ping.headers.get("Server", "")
        if result["front"] != "nginx":
            raise ImageTestError(f"/ping not answered through nginx (Server: {result['front']!r})")
        start = time.monotonic()
        reply = requests.post(
            f"{base}/invocations",
            data=rgba_png(),
            timeout=120,
            headers={"Content-Type": "image/png", "Accept": "model/gltf-binary"},
        )
        result["invocation_s"] = round(time.monotonic() - start, 2)
        if reply.status_code != 200:
            raise ImageTestError(f"/invocations {reply.status_code}: {reply.text[:300]}")
        glb = reply.content
        if glb[:4] != b"glTF":
            raise ImageTestError(f"/invocations did not return a GLB (starts {glb[:8]!r})")
        mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
        if len(mesh.faces) == 0:
            raise ImageTestError("the GLB holds no faces")
        result.update(
            invocation_status=reply.status_code,
            content_type=reply.headers.get("Content-Type"),
            glb_bytes=len(glb),
            vertices=len(mesh.vertices),
            faces=len(mesh.faces),
        )
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        result["exit_code_after_sigterm"] = server.returncode
        tail = server.stdout.read().strip().splitlines()[-5:] if server.stdout else []
        result["server_log_tail"] = tail
    if result["exit_code_after_sigterm"] != 0:
        raise ImageTestError(f"server exited {server.returncode} on SIGTERM: {tail}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/image_test.py",
        description="Build the cpu serving image with podman from a debootstrap base and "
        "serve /ping and /invocations out of the built image root (needs root).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (a free one)")
    parser.add_argument(
        "--rebuild-base",
        action="store_true",
        help="debootstrap the base again even if localhost/gen3d-base exists",
    )
    parser.add_argument(
        "--skip-build",
        action="store_true",
        help="reuse localhost/gen3d:cpu-test from an earlier run",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=180.0, help="seconds to wait for /ping (180)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image-test: needs root (debootstrap, chroot, mounts)", file=sys.stderr)
        return 2
    timings: dict[str, float] = {}
    from gen3d.serve.local_server import free_port

    port = args.port or free_port()
    try:
        ensure_tools()
        with tempfile.TemporaryDirectory(prefix="gen3d-image-test-", dir="/var/tmp") as tmp:
            workdir = Path(tmp)
            if args.rebuild_base and image_exists(BASE_IMAGE):
                podman("rmi", "-f", BASE_IMAGE, stdout=subprocess.DEVNULL)
            build_base(workdir, timings)
            if not (args.skip_build and image_exists(IMAGE)):
                build_image(workdir, timings)
            config = image_config()
            base_size = json.loads(
                podman("image", "inspect", BASE_IMAGE, capture_output=True, text=True).stdout
            )[0]["Size"]
            with mounted_root(workdir) as (lower, root):
                contents = check_contents(lower, root, config)
                served = serve_and_query(root, config, port, args.ready_timeout)
    except (ImageTestError, subprocess.CalledProcessError) as exc:
        print(f"image-test: FAILED: {exc}", file=sys.stderr)
        return 1
    report = {
        "image": IMAGE,
        "image_size_bytes": config["Size"],
        "image_size_mb": round(config["Size"] / 1e6, 1),
        "base_size_mb": round(base_size / 1e6, 1),
        "added_by_dockerfile_mb": round((config["Size"] - base_size) / 1e6, 1),
        "timings_s": timings,
        "contents": contents,
        "served": served,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    log("PASSED: /ping 200 and a GLB from /invocations, served from the built image root")
    return 0


if __name__ == "__main__":
    sys.exit(main())
