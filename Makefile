# The two commands: `make demo` (pretrain a tiny V-JEPA on synthetic videos, then probe it against a randomly
# initialised backbone, CPU) and `make test`.
# Both create .venv and install everything on first use.
# GPU users pick their torch build with one variable, e.g.
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,dali,bench]"
	# DeepSpeed ships a source package whose build imports torch: build it against the torch installed above
	$(PY) -m pip install -q --no-build-isolation "deepspeed==0.19.8"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) data_tools/make_synthetic_videos.py --out demo_out/videos --num-videos 192
	$(PY) launch/pretrain.py --config configs/pretrain/tiny_cpu.yaml --set logging.overwrite=true
	$(PY) data_tools/make_synthetic_videos.py --out demo_out/probe_videos --num-videos 192 --seed 1 --val-fraction 0.25
	$(PY) launch/eval.py --config configs/evals/tiny_cpu_probe.yaml --random-init-baseline --set probe.overwrite=true

# the fast tests on both cores, then the slow ones (real SLURM, several ranks, kills) one at a time
test: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow" -n 2 tests
	$(PY) -m pytest -q -ra -m slow tests

bench: $(STAMP)
	$(PY) bench/step_time.py
	$(PY) bench/data_throughput.py

clean:
	rm -rf demo_out .pytest_cache
