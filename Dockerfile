# Auftragsmanager: one image for the worker (`orders worker`), the API (`orders api`) and
# the migration (`alembic upgrade head`); see docker-compose.yml.
FROM python:3.11-slim

# WeasyPrint (PDF documents) needs Pango and HarfBuzz; fonts for the rendered PDFs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 \
        fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the application needs (no .venv, var/ or tests in the image).
COPY pyproject.toml README.md alembic.ini settings.py worker.py ./
COPY activities/ activities/
COPY models/ models/
COPY starter/ starter/
COPY workflows/ workflows/
COPY migrations/ migrations/
COPY templates/ templates/
COPY schemas/ schemas/
COPY demo/ demo/
RUN pip install .

# settings.py finds templates/, schemas/ and migrations/ next to itself; with /app first on
# the path the code runs from here (the installed copy provides the dependencies and the
# `orders` command), so the default paths hold.
ENV PYTHONPATH=/app \
    ORDERS_TEMPLATES_DIR=/app/templates

RUN useradd --system --uid 10001 --home-dir /app orders \
    && mkdir -p /app/var && chown orders /app/var
USER orders

EXPOSE 8000
CMD ["orders", "api"]
