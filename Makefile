# Two commands on a fresh machine with only Python 3.11:
#   make demo   runs the main job on the built-in demo data
#   make test   runs lint, type checks and the whole test suite
# Each bootstraps uv into .tools/ and syncs .venv/ from the committed uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: demo test sync lint services bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installed packages are compiled to bytecode by uv (`compile-bytecode` in pyproject.toml)
# and segvalue's own sources here, so start-up never depends on .pyc files being written at
# first import (PYTHONDONTWRITEBYTECODE, a read-only checkout).
sync: $(UV)
	$(UV) sync --locked --extra postgres --extra spark --extra web --python $(PYTHON)
	.venv/bin/python -m compileall -q src

demo: sync
	.venv/bin/segvalue demo

lint: sync
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

# The tests start a real PostgreSQL server on a free loopback port, Spark in local mode
# (which needs Java 17+) and Debian's Chromium for the dashboard's browser tests (never a
# browser Playwright downloads): install them from Debian's packages when missing.
services:
	@missing=""; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  missing="$$missing postgresql"; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: lint services
	.venv/bin/pytest

clean:
	rm -rf $(TOOLS) .venv .pytest_cache .mypy_cache .ruff_cache segvalue-output
