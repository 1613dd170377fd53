# Image for `dynplan serve` (manifests/ runs it as ghcr.io/dynplan/dynplan:<version>).
#   docker build -t ghcr.io/dynplan/dynplan:0.1.0 .
# Installs the wheel with the ARIMA extra; add `prophet` to EXTRAS for Prophet plans.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler scaler
COPY templates templates
COPY proto proto
RUN pip install --no-cache-dir hatchling && pip wheel --no-deps --no-build-isolation -w /wheels .

FROM python:3.11-slim
ARG EXTRAS=arima
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/dynplan-*.whl)[${EXTRAS}]" && rm -rf /wheels
# The Deployment runs as this non-root user with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["dynplan"]
CMD ["serve", "--plans=/plans"]
