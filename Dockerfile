# syntax=docker/dockerfile:1
# pdp as a container image (README, "Deploying"):
#   docker build -t pdp .
#   docker run --rm -p 50051:50051 pdp                                   # the shipped policies/
#   docker run --rm -p 50051:50051 -v "$PWD/my-policies:/policies:ro" pdp  # yours
#   docker run --rm pdp serve --bundle /etc/pdp/policies.bundle --verify-key /etc/pdp/verify.pem --addr 0.0.0.0:50051
ARG PYTHON_VERSION=3.12

# ---- build: the wheel, with the compiled (Cython) evaluator, and the wheels it depends on ----
FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY grammar/ grammar/
COPY pdp/ pdp/
# PDP_REQUIRE_EXTENSION=1: a compiled evaluator that fails to build fails the image build,
# instead of an image that silently decides on the slower pure-Python evaluator.
RUN PDP_REQUIRE_EXTENSION=1 pip wheel --no-cache-dir --no-deps -w /wheels . \
 && pip wheel --no-cache-dir -w /wheels /wheels/pdp-*.whl

# ---- runtime: slim, no compiler, non-root ----
FROM python:${PYTHON_VERSION}-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin pdp
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels pdp \
 && python -c "from pdp import runtime; assert runtime.BACKEND == 'compiled', runtime.BACKEND"
COPY policies/ /policies/
USER 10001:10001
ENV PYTHONUNBUFFERED=1
EXPOSE 50051
# Healthy once the policies are loaded (and their suites passed) and the port answers;
# NOT_SERVING while draining after SIGTERM.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["pdp", "health", "--addr", "127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pdp"]
CMD ["serve", "/policies", "--addr", "0.0.0.0:50051", "--decision-log", "-"]
