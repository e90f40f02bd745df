# One image for every modelfleet process (compose.yaml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md beat_schedule.py ./
COPY workers ./workers
COPY tasks ./tasks
RUN pip install --no-cache-dir .

USER nobody
CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO"]
