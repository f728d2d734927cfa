# crmhub: `make run` starts everything on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ADDR ?= 127.0.0.1:8000

.PHONY: install run web worker migrate demo test test-fast lint messages bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-mysql.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@# Optional C driver for the MariaDB/MySQL connectors; it needs libmariadb-dev and pkg-config to build.
	$(BIN)/python -m pip install --quiet -r requirements-mysql.txt 2>/dev/null || \
		echo "mysqlclient not built (apt-get install libmariadb-dev pkg-config): MariaDB/MySQL connectors use PyMySQL"
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo

# Web server and Celery worker together, on SQLite and the SQLite-file broker unless
# DATABASE_URL / CELERY_BROKER_URL say otherwise.
run: demo
	$(BIN)/python manage.py runall $(ADDR)

web: migrate
	$(BIN)/python manage.py runserver $(ADDR)

worker: install
	$(BIN)/celery -A crmhub worker -l info

# The whole suite: unit, integration (a real Celery worker) and browser tests (Playwright
# driving Debian's chromium, installed here if missing and possible).
test: install
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not browser and not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# From the project root, so every app and templates/ are scanned into locale/ (LOCALE_PATHS).
messages: install
	$(BIN)/python manage.py makemessages -l zh_Hans --ignore "*/migrations/*" --ignore "tests/*" \
		--ignore "bench/*" --ignore "scripts/*" --ignore "docs/*"
	$(BIN)/python manage.py compilemessages --ignore .venv

clean:
	rm -rf var/test .pytest_cache
