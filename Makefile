# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# apt-get needs root: sudo only when not already root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run serve test bench proto migrate superuser check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

## run: serve on http://$(HOST):$(PORT) on the embedded defaults (SQLite, in-process everything)
run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py sealed_sender development
	@echo
	@echo "signalserver on http://$(HOST):$(PORT)/   API docs: http://$(HOST):$(PORT)/v1/docs"
	@echo "Admin: http://$(HOST):$(PORT)/admin/  (create an operator: $(BIN)/python manage.py createsuperuser)"
	@echo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## serve: the production process model (Procfile: uvicorn web workers, Celery worker and beat)
## on PostgreSQL and Redis; needs DATABASE_URL and REDIS_URL (see .env.example, docs/deployment.md);
## metrics on 127.0.0.1:9808 (METRICS_PORT, docs/deployment.md "Metrics")
serve: $(VENV)/.runtime
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "make serve needs DATABASE_URL and REDIS_URL (PostgreSQL and Redis); make run needs neither"; exit 2; }
	$(BIN)/python manage.py migrate --noinput -v 0
	METRICS_DIR=$${METRICS_DIR:-var/metrics} METRICS_PORT=$${METRICS_PORT:-9808} $(BIN)/honcho start

## test: the whole suite on PostgreSQL and Redis (DATABASE_URL / REDIS_URL, default: local services)
test: $(VENV)/.dev | /usr/bin/chromium /usr/bin/turnserver /usr/bin/systemd-analyze /usr/bin/promtool
	$(BIN)/python -m pytest

# Debian's chromium for the browser tests (tests/browser): Playwright drives it, downloads no browser.
# `apt-get update` only when the install fails on stale package lists.
APT_CHROMIUM := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
/usr/bin/chromium:
	$(APT_CHROMIUM) || { $(SUDO) apt-get update && $(APT_CHROMIUM); }

# Debian's coturn for the calling tests (tests/turn.py starts its own turnserver on free loopback
# ports). The package enables and starts a system-wide turnserver on port 3478 where an init system
# runs services: stopped and disabled here, so that none keeps listening.
APT_COTURN := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn
/usr/bin/turnserver:
	$(APT_COTURN) || { $(SUDO) apt-get update && $(APT_COTURN); }
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now coturn.service; \
	else $(SUDO) update-rc.d coturn disable && { $(SUDO) /etc/init.d/coturn stop || true; }; fi

# Debian's systemd for `systemd-analyze verify` of deploy/systemd (tests/test_systemd_units.py).
APT_SYSTEMD := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd
/usr/bin/systemd-analyze:
	$(APT_SYSTEMD) || { $(SUDO) apt-get update && $(APT_SYSTEMD); }

# Debian's prometheus for `promtool`, which checks and unit-tests deploy/prometheus (tests/test_alert_rules.py).
# The package enables and starts a Prometheus server where an init system runs services: stopped
# and disabled here, as coturn's.
APT_PROMETHEUS := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
/usr/bin/promtool:
	$(APT_PROMETHEUS) || { $(SUDO) apt-get update && $(APT_PROMETHEUS); }
	if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now prometheus.service; \
	else $(SUDO) update-rc.d prometheus disable && { $(SUDO) /etc/init.d/prometheus stop || true; }; fi

## bench: load scenarios against a running server (SCENARIO=..., see bench/README.md)
bench: $(VENV)/.dev
	$(BIN)/python -m bench $(SCENARIO) $(ARGS)

## proto: regenerate the committed *_pb2.py from signalserver/proto/*.proto
proto: $(VENV)/.dev
	$(BIN)/python -m grpc_tools.protoc -Isignalserver/proto --python_out=signalserver/proto signalserver/proto/*.proto

superuser: $(VENV)/.runtime
	$(BIN)/python manage.py createsuperuser

clean:
	rm -rf $(VENV) db.sqlite3 var
