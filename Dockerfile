# First version: the runner with the CloudFormation backend. The engines (tofu, pulumi) join through the
# project's own tools step in a Go builder stage.
FROM python:3.11-slim AS runtime

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --shell /usr/sbin/nologin runner

WORKDIR /opt/iac-runner
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY backends ./backends
RUN pip install --no-cache-dir . \
 && rm -rf /root/.cache

USER 1000
ENV HOME=/home/runner PYTHONUNBUFFERED=1
ENTRYPOINT ["iac-runner", "container"]
