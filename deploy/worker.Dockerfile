# The rings worker image of deploy/compose.yaml (built from the repository root).
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY rings ./rings
COPY streams ./streams
COPY rules ./rules
RUN pip install --no-cache-dir --no-deps -e .
ENV RINGS_DATA_DIR=/data PYTHONUNBUFFERED=1
EXPOSE 6066
CMD ["rings", "worker", "--web-port", "6066", "--web-host", "0.0.0.0"]
