# One image for every papermail service (web, worker, beat, migrate); compose picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY src ./src
COPY workers ./workers
COPY templates ./templates
RUN pip install ".[postgres,monitoring]" \
    && useradd --create-home papermail \
    && mkdir -p /var/lib/papermail && chown papermail /var/lib/papermail
USER papermail
EXPOSE 8000
CMD ["papermail", "--help"]
