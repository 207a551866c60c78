# The kubetasks operator image: the same `pip install` and command the tests run.
# Build from the repository root:  docker build -t kubetasks-operator .
#
# BASE_IMAGE: any Python >= 3.11 image with pip and useradd on PATH. Where no registry is
# reachable, `python -m localcluster.images` builds one from Debian packages and passes it.
# The build secret `pipcert` (optional) is a CA bundle for pip, say of a TLS-intercepting proxy;
# it is mounted for the install only and never stored in the image:
#   docker build --secret id=pipcert,src=/etc/ssl/certs/ca-certificates.crt -t kubetasks-operator .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
COPY pyproject.toml README.md /src/
COPY src /src/src
COPY operator /src/operator
RUN --mount=type=secret,id=pipcert,required=false \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi; \
    pip install --no-cache-dir "/src[operator]" && rm -rf /src
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kubetasks
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["kubetasks-operator"]
