FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine engine
COPY workflows workflows
COPY activities activities
COPY rules rules
COPY api api
RUN pip install --no-cache-dir ".[postgres]"
EXPOSE 8000
CMD ["journeys", "api", "--host", "0.0.0.0", "--port", "8000"]
