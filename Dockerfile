# The kubetasks operator image: the same `pip install` and command the tests run.
FROM python:3.12-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY operator ./operator
RUN pip install --no-cache-dir ".[operator]" && rm -rf /src
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubetasks
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["kubetasks-operator"]
