"""The fixed text of benchmarks/README.md: how to run the suites, here and on a GPU."""

# ruff: noqa: E501  (markdown table rows are one line each)

HOW_TO_RUN = """\
## How to run

| what | command | bound |
|---|---|---|
| CPU suite + this report | `make bench` | <= 10 min on 2 cores |
| GPU suite (any CUDA GPU) | `benchmarks/gpu_check.sh OUTDIR` | <= 8 min; no GPU: exit 2 |
| one suite | `gen3d bench SUITE --help` (model, server, coldstart, peers, overload, latency) | per level |
| report only | `gen3d bench report` | seconds |

The peer and overload suites, each on its own:

```bash
gen3d bench peers --backend silhouette      # ours, LitServe, BYOC at 1,4,16,64 (~3 min)
gen3d bench overload --backend silhouette   # ours at 4,16,64,100 clients, 8 s each (~1 min)
gen3d bench overload --backend silhouette --peers          # and both peers, in turn (~3 min)
gen3d bench overload --max-queue 16 --env MODEL_SERVER_WORKERS=2  # other settings of ours (--env: ours)
```

`make bench` (`gen3d bench all`) runs the overload suite on our server alone, with
silhouette, as its last step (about 40 s); the run with the peers is left out of it
because it triples that, so run it on its own.

**The peers.** LitServe serves our backend with its own dynamic batching (our max batch
size and delay). The AWS-BYOC-style peer (`gen3d.benchmarks.byoc_peer`) serves it the
way AWS's scikit-learn bring-your-own-container example does: a minimal Flask app under
gunicorn sync workers, one per core (`--byoc-workers`), each with its own model, one
request at a time; no batching, no queue, no admission control (requests beyond the
workers wait in the kernel's accept queue). All speak the same JSON (our codecs) on
127.0.0.1 only, and each level runs on the three in turn, each going first at one
level in three (and, with `--repeats`, at a different level in each run), with
the two not being measured paused (SIGSTOP, `--keep-idle-running` to leave them): idle,
LitServe polls its queues and takes 13 % of a core from the server measured beside it
(proxy tiny, 4 clients, 3 rounds each: ours / LitServe 0.86-0.92 with it idling beside
ours, 1.00-1.23 with it paused). Each server's time at a level is cut into `--slices`
windows (default 4), taken in turn with the other servers' and in reverse order every
other round (A B C, C B A, ...), and pooled: with nothing else running, the same fixed
work on this machine's cores takes from 0.080 to 0.18 s, in spells of tens of seconds,
on both cores at once, and the kernel reports no steal time
([vcpu_speed.json](results/cpu/vcpu_speed.json), docs/measurements.md): a
single 8 s window per server let one such spell land on one server alone.

**Overload.** N client threads post the JSON request in a loop and retry every 503 (or
connection error) at once, as an impatient client does. Per level: goodput (200s per
second in the window), refusals per second, other answers, p50/p99 of successes from
the first attempt (retries included) and of the successful attempt alone, attempts per
success, and `/ping` latency from a prober during the window (p50/p99/max). Summary per
server: peak goodput and goodput at the largest level / peak (1: no collapse).

Every suite writes `results/<device>/<suite>_<name>.json` (device `cpu`, or `cuda-<gpu name>`),
each with an environment fingerprint (CPU model and cores, load average at start and end,
GPU name, driver, CUDA, torch, git commit). `gen3d bench report` rebuilds this page, the
plots in `plots/` and `results/seconds_per_image.json`, which `gen3d cost --bench` reads.

### On a GPU instance: ml.g4dn (T4, 16 GB) and ml.g5 (A10G, 24 GB)

SageMaker endpoints cannot run an interactive benchmark, so run it on the same GPU
outside an endpoint: a SageMaker notebook instance or an EC2 instance of the same family
(`g4dn.xlarge` = ml.g4dn.xlarge's T4, `g5.xlarge` = ml.g5.xlarge's A10G), with a Deep
Learning AMI or any image with an NVIDIA driver:

```bash
git clone <this repo> gen3d && cd gen3d
make setup                       # pip's default torch wheel on Linux x86_64 is a CUDA build
# T4 (ml.g4dn): bf16 is refused there (compute capability 7.5), so it is recorded as skipped
make bench DEVICE=cuda INSTANCE_TYPE=ml.g4dn.xlarge
# A10G (ml.g5)
make bench DEVICE=cuda INSTANCE_TYPE=ml.g5.xlarge
# or only the bounded GPU check, results in a folder of your choice:
GEN3D_INSTANCE_TYPE=ml.g5.xlarge benchmarks/gpu_check.sh /tmp/gpu-results
cp -r /tmp/gpu-results/* benchmarks/results/ && .venv/bin/gen3d bench report
```

`make bench DEVICE=cuda` runs the GPU suite: the proxy `full` model (writes its 8.5 GB of
random weights once to `~/.cache/gen3d/bench-models`) at fp32 / fp16 / bf16 / int8 and
batch 1, 2, 4, 8 with a reduced step count (the full 25 + 25 steps would take minutes per
sample on a T4), then a server run. Commit the new `results/cuda-*` folder and this page;
the instance type you pass is written into `seconds_per_image.json`, where the cost model
prefers entries measured on the instance type it prices.
"""
