"""The fixed text of benchmarks/README.md: how to run the suites, here and on a GPU."""

# ruff: noqa: E501  (markdown table rows are one line each)

HOW_TO_RUN = """\
## How to run

| what | command | bound |
|---|---|---|
| CPU suite + this report | `make bench` | <= 10 min on 2 cores |
| GPU check (offline CUDA machine) | `make gpu-wheels` here, then `make gpu-check OUT=DIR` there | <= 8 min; stops itself before 9; no GPU: exit 2 |
| its rehearsal (CI) | `make gpu-rehearsal` | < 2 min on the CPU, install offline |
| full GPU suite (networked CUDA machine) | `make bench DEVICE=cuda` | <= 8 min after the one-time 8.5 GB weights |
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
ours, 1.00-1.23 with it paused). A fourth, the **in-process ceiling**
(`gen3d.benchmarks.ceiling`), is measured in the same turns: as many processes as the
BYOC peer has workers, each with its own model, doing one request's work (decode the JSON
body, predict, encode the JSON answer: the BYOC handler's own code) back to back with no
server at all; `ceiling_ratio` is ours over it, and `gen3d bench cpu` counts the CPU per
request each server spends beyond it. Each server's time at a level is cut into `--slices`
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

### The GPU check: a bare, offline GPU machine -> CUDA numbers in one command

GPU time comes in short windows on machines we do not set up, so the check is built
for the worst case: x86-64 Linux, one NVIDIA GPU, Python 3.12 at `python3` with torch
(a CUDA build) and numpy, pillow, scikit-image, safetensors, onnxruntime and
opencv-python-headless preinstalled, **no network**, nginx maybe absent, at most 64 MiB
shipped beside the repository, at most 8 result files of 16 MiB coming back, 9 minutes
per command.

```bash
# 1. here, with the network: the runtime wheels the target lacks + the project's own wheel
make gpu-wheels                  # -> .gpu-wheels/ (ignored), ~22 MiB (limit 40), manylinux cp312
# 2. ship the checkout with .gpu-wheels/ beside it; on the GPU machine, offline:
make gpu-check OUT=/tmp/gpu      # or: benchmarks/gpu_check.sh /tmp/gpu  (or $OUT)
# 3. copy the results folder back into the checkout and rebuild this page
cp -r /tmp/gpu/cuda-* benchmarks/results/ && .venv/bin/gen3d bench report
```

What `make gpu-check` does (`benchmarks/gpu_check.sh`, then
`python -m gen3d.benchmarks.gpu_check`):

1. installs every wheel of `.gpu-wheels` with `pip install --no-index --no-deps
   --target .gpu-site` and no pip config (refusing a project wheel older than the
   checkout), and puts `.gpu-site` on `PYTHONPATH`;
2. draws the proxy `full` weights on the GPU from seed 0 (each tensor from its own
   generator seeded by (seed, name), as `gen3d proxy init` seeds them) and writes them
   as fp16 safetensors with their manifest: seconds, where the CPU writer's 8.5 GB of
   fp32 takes minutes;
3. measures on proxy full: each stage's latency (encoder, one stage-1 and one stage-2
   flow step with their CFG pair, decoder) at fp32, fp16 and bf16, and the model time
   of the full 25 + 25 steps from them; batch 1, 2, 4, 8 through the server's own
   Batcher (samples/s, the batches it formed, the batch 8 / batch 1 ratio) with peak
   GPU memory per batch size; the server end to end (`launcher.start_server`: nginx +
   gunicorn when nginx is installed, gunicorn alone otherwise, recorded per row) at 1,
   4 and 16 clients with batching on and off; the compile cache: one fresh process
   compiles the stages with an empty inductor cache (cold), a second one starts from
   that cache (warm). Predict, Batcher and server use 2 flow steps per stage (25 + 25
   would take a T4 minutes per sample);
4. writes at most 5 files under `OUT/cuda-<gpu>/`: `gpucheck_proxy-full.json`
   (environment fingerprint: GPU, driver, CUDA, torch, CPU, git commit), `stages.png`,
   `batching.png`, `served.png` and `summary.md`, and prints the summary table;
5. plans for 8 minutes including installation: a step that no longer fits is recorded
   as skipped, with why, and `timeout` stops the whole run at 530 s. The JSON is
   rewritten after every step, so a stopped run still returns what it measured.

`make gpu-rehearsal` (CI runs it) proves the same script on the CPU before it meets a
GPU: a fresh venv that sees only torch and the packages the target has preinstalled
(linked from `.venv`), `make gpu-wheels` for this machine's Python (the same names and
versions, this interpreter's ABI), then `gpu_check.sh --device cpu --smoke` inside a
network namespace with only loopback up (`unshare -n`: the install and every step
offline), at toy sizes (proxy tiny, torch on one thread, the server's own warm-up on; the
compile step compiles the decoder alone). It
fails unless every step was measured, nothing was skipped, the server answered every
request and at most 8 files came out, or if the offline install and check took over 2
minutes (`GEN3D_REHEARSAL_LIMIT_S`; the wheel download before it is timed apart, as
`make gpu-wheels` happens beforehand on the real path).

**T4 (ml.g4dn) and A10G (ml.g5)** stay *not measured* in the GPUs table until someone
runs the check there. SageMaker endpoints cannot run an interactive benchmark, so use
the same GPU outside an endpoint: a SageMaker notebook instance or an EC2 instance of
the same family (`g4dn.xlarge` = ml.g4dn.xlarge's T4, `g5.xlarge` = ml.g5.xlarge's
A10G) with a Deep Learning AMI. Those have the network, so `make gpu-wheels` can run
there too (with their Python, 3.11 or later: `make gpu-wheels GPU_PYTHON=3.11` on a 3.11 image):

```bash
GEN3D_INSTANCE_TYPE=ml.g4dn.xlarge make gpu-check OUT=/tmp/gpu   # T4: bf16 is recorded as skipped
GEN3D_INSTANCE_TYPE=ml.g5.xlarge make gpu-check OUT=/tmp/gpu     # A10G
# back here: copy the folder in, rebuild this page, commit both
scp -r HOST:/tmp/gpu/cuda-* benchmarks/results/ && .venv/bin/gen3d bench report
```

`make bench DEVICE=cuda INSTANCE_TYPE=ml.g5.xlarge` is the longer suite for a networked
GPU machine: proxy `full` at fp32 / fp16 / bf16 / int8 through `gen3d bench model` and
`server` (it writes the 8.5 GB fp32 weights once to `~/.cache/gen3d/bench-models`).
The instance type you pass is written into `seconds_per_image.json`, where the cost
model prefers entries measured on the instance type it prices.
"""
