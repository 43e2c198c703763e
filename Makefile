# fastnoise developer entry points. Two commands on a fresh clone:
#   make demo   set up .venv, build, run the quick leaderboard (every defense, one protocol) on the digits set
#   make test   set up .venv, build, compile-check every CUDA source, run the whole test suite
# Also: make bench (benchmarks, results appended to results/bench.csv), make cuda-check, make clean,
#   make gpu-check [OUT=dir] [DRY_RUN=1]  GPU validation, one report (tools/gpu_check.py, docs/gpu.md).
#   make test also compiles every Triton launch of the suite for sm_80 / sm_90 (tools/triton_compile_check.py).
#   make test-cpu-capabilities  the op tests with every other CPU capability forced (FASTNOISE_CPU_CAPABILITY).
#   FASTNOISE_NATIVE=1 make setup  also builds the -march=native CPU kernels (loaded where they can run).
#   make setup builds the CPU capabilities this CPU can run (FASTNOISE_CPU_CAPABILITIES=host: CI builds what it
#   tests); FASTNOISE_CPU_CAPABILITIES=generic,avx2,avx512 make setup (or a wheel, below) builds every one.
#   make wheel-check  the wheel in a fresh venv with the same torch, a test subset there (tools/wheel_check.sh).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_PIN ?= torch==2.13.0
TRITON_PIN ?= triton==3.6.0
PYDEPS := numpy scipy tqdm safetensors scikit-learn matplotlib ninja pytest pytest-benchmark pytest-timeout pytest-xdist hypothesis
CSRC := $(shell find csrc -type f) setup.py pyproject.toml

.PHONY: setup demo test test-full test-cpu-capabilities wheel-check bench cuda-check gpu-check clean

$(PY):
	python3 -m venv $(VENV)

# torch from the local CPU wheel (never an unpinned torch: that pulls GBs of CUDA wheels);
# torchattacks without its declared-but-unused dependencies (torchvision, old requests); snntorch
# (tests: the independent LIF implementation) imports only torch and numpy, installed without deps too.
$(VENV)/.deps: $(PY) Makefile
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q "$(TRITON_PIN)" $(PYDEPS)
	$(PIP) install -q --no-deps torchattacks==3.5.1
	$(PIP) install -q --no-deps snntorch==1.0.0
	touch $@

$(VENV)/.built: $(VENV)/.deps $(CSRC)
	FASTNOISE_CPU_CAPABILITIES=$${FASTNOISE_CPU_CAPABILITIES:-host} FASTNOISE_NATIVE=$${FASTNOISE_NATIVE:-0} \
	  MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

setup: $(VENV)/.built

# the quick leaderboard: every registered defense + standard training + PGD-AT, one protocol (docs/robustness.md),
# its jobs shared by DEMO_PROCS processes (the same numbers as one); runs/demo is resumed when it exists (delete it
# to start over). `fastnoise demo` is the one-method pipeline.
DEMO_PROCS ?= 2
demo: setup
	OMP_NUM_THREADS=1 $(PY) -m torch.distributed.run --standalone --nproc-per-node $(DEMO_PROCS) -m fastnoise \
	  leaderboard --dataset digits --budget quick --methods all --out runs/demo --distributed

# CUDA sources compile here with nvcc alone (sm_80 and sm_90); nothing built from them runs here.
cuda-check:
	@if command -v nvcc >/dev/null; then \
	  cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	  cmake --build build/cmake --target cuda_compile_check -j2 && echo "cuda-check: all CUDA sources compiled for sm_80 and sm_90"; \
	elif [ "$$CI" = "true" ]; then echo "cuda-check: nvcc not found (required in CI)"; exit 1; \
	else echo "cuda-check: nvcc not found, CUDA sources not compiled"; fi

# CI: the suite, then the GPU check's dry run (lists every GPU test and benchmark case) and the wheel in a fresh venv.
# CI: two pytest workers (the Triton interpreter is single-threaded Python) and every 4th Triton-on-CPU case
# of each test function (design note 52); `make test-full` runs every case.
TEST_WORKERS ?= 2
TRITON_SUBSET ?= 4
# The suite records the signature of every Triton launch it makes (FASTNOISE_TRITON_RECORD), which
# tools/triton_compile_check.py then compiles for sm_80 and sm_90 (the Triton analogue of cuda-check).
TRITON_RECORD := runs/triton-launches
test: setup cuda-check
	rm -rf $(TRITON_RECORD)
	FASTNOISE_TRITON_SUBSET=$(TRITON_SUBSET) TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 TRITON_INTERPRET=1 \
	  FASTNOISE_TRITON_RECORD=$(TRITON_RECORD) \
	  $(PY) -m pytest tests -q -p no:cacheprovider --timeout=900 -n $(TEST_WORKERS)
	$(PY) tools/triton_compile_check.py $(TRITON_RECORD) --arch 80,90
	bash tools/gpu-check runs/gpu-check-dry --dry-run
	$(MAKE) --no-print-directory wheel-check

test-full:
	$(MAKE) --no-print-directory test TRITON_SUBSET=1

# The wheel (pip wheel --no-build-isolation: reuses make setup's objects, only links) installed with the same
# torch into a fresh venv, a test subset run there. FASTNOISE_CPU_CAPABILITIES=generic,avx2,avx512 for the full
# portable wheel (compiles what make setup did not).
wheel-check: setup
	FASTNOISE_CPU_CAPABILITIES=$${FASTNOISE_CPU_CAPABILITIES:-host} bash tools/wheel_check.sh $(PY)

# The op tests on the C++ kernels with each other CPU capability this CPU supports forced (the whole suite ran
# with the fastest one). Triton's interpreter tests are left out: they do not use the C++ kernels.
CAP_TESTS ?= $(wildcard tests/ops/test_*.py) tests/test_cpu_capability.py
test-cpu-capabilities: setup
	@for cap in $$($(PY) -c "from fastnoise import _ext; print(' '.join(_ext.cpu_capabilities()[1][1:]))"); do \
	  echo "test-cpu-capabilities: FASTNOISE_CPU_CAPABILITY=$$cap"; \
	  FASTNOISE_CPU_CAPABILITY=$$cap TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 $(PY) -m pytest $(CAP_TESTS) -q \
	    -p no:cacheprovider -k "not triton" --timeout=900 || exit 1; \
	done

# On a machine with a CUDA torch and nvcc (no .venv there: its own python3): build, GPU tests, compute-sanitizer,
# GPU benchmarks in at most 8 minutes (hard limit 570 s); OUT (default: $$OUT or runs/gpu-check) gets report.md,
# report.csv and logs.tar.gz, rewritten after every stage. DRY_RUN=1 (CI): list it all on a CPU (docs/gpu.md).
gpu-check: $(if $(DRY_RUN),setup)
	bash tools/gpu-check $(if $(OUT),"$(OUT)") $(if $(DRY_RUN),--dry-run)

bench: setup
	$(PY) -m fastnoise bench

clean:
	rm -rf build dist $(VENV) *.egg-info fastnoise/*.so fastnoise/_build_info.json
