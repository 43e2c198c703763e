# fastnoise developer entry points. Two commands on a fresh clone:
#   make demo   set up .venv, build, run the main job on the embedded default data set
#   make test   set up .venv, build, compile-check every CUDA source, run the whole test suite
# Also: make bench (benchmarks, results appended to results/bench.csv), make cuda-check, make clean.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_PIN ?= torch==2.13.0
TRITON_PIN ?= triton==3.6.0
PYDEPS := numpy scipy tqdm safetensors scikit-learn matplotlib ninja pytest pytest-benchmark pytest-timeout hypothesis
CSRC := $(shell find csrc -type f) setup.py pyproject.toml

.PHONY: setup demo test bench cuda-check clean

$(PY):
	python3 -m venv $(VENV)

# torch from the local CPU wheel (never an unpinned torch: that pulls GBs of CUDA wheels);
# torchattacks without its declared-but-unused dependencies (torchvision, old requests).
$(VENV)/.deps: $(PY) Makefile
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q "$(TRITON_PIN)" $(PYDEPS)
	$(PIP) install -q --no-deps torchattacks==3.5.1
	touch $@

$(VENV)/.built: $(VENV)/.deps $(CSRC)
	FASTNOISE_NATIVE=$${FASTNOISE_NATIVE:-1} MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

setup: $(VENV)/.built

demo: setup
	$(PY) -m fastnoise demo

# CUDA sources compile here with nvcc alone (sm_80 and sm_90); nothing built from them runs here.
cuda-check:
	@if command -v nvcc >/dev/null; then \
	  cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null && \
	  cmake --build build/cmake --target cuda_compile_check -j2 && echo "cuda-check: all CUDA sources compiled for sm_80 and sm_90"; \
	elif [ "$$CI" = "true" ]; then echo "cuda-check: nvcc not found (required in CI)"; exit 1; \
	else echo "cuda-check: nvcc not found, CUDA sources not compiled"; fi

test: setup cuda-check
	TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 TRITON_INTERPRET=1 $(PY) -m pytest tests -q -p no:cacheprovider --timeout=900

bench: setup
	$(PY) -m fastnoise bench

clean:
	rm -rf build $(VENV) *.egg-info fastnoise/*.so fastnoise/_build_info.json
