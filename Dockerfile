# The Deepfake Detector web page (and the deepfake-detect command) in a container.
#
#   docker build -t deepfake-detector .
#   docker run -d -p 8501:8501 -v deepfake-models:/models deepfake-detector
#   docker run -d -p 8000:8000 -v deepfake-models:/models -e DEEPFAKE_API_KEYS=... deepfake-detector \
#       deepfake-detect api --host 0.0.0.0 --port 8000          the HTTP API instead of the page (README, "HTTP API")
#
# Build arguments:
#   TORCH_INDEX_URL   where torch/torchvision come from: the CPU-only wheels by default; a CUDA build takes
#                     e.g. https://download.pytorch.org/whl/cu130 (see docs/docker.md, "GPU hosts")
#   TORCH_VERSION, TORCHVISION_VERSION   the pair the project is tested with
#   BAKE_MODELS=1     put the model files into the image at build time (default 0: the first start of a
#                     container downloads them into the /models volume instead)
#   DEEPFAKE_WEIGHTS_MIRROR   with BAKE_MODELS=1: fetch the files from <mirror>/<file name>
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS   where pip finds the other packages (default: PyPI),
#                     e.g. a local mirror; they reach the install steps only, not the image
# Plain Dockerfile syntax: the classic builder (DOCKER_BUILDKIT=0) and BuildKit both build it.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /opt/deepfake-detector

# 1. PyTorch, from the index the build argument names (CPU-only wheels by default: no CUDA libraries).
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# 2. The other dependencies (the library's, the web page's and the HTTP API's), read from pyproject.toml
#    alone, so that a code change reuses this layer and the one above. The constraints keep the torch installed
#    above.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['app'] + p['optional-dependencies']['api']))" > /tmp/requirements.txt \
 && printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /tmp/constraints.txt \
 && pip install -r /tmp/requirements.txt -c /tmp/constraints.txt \
 && rm /tmp/requirements.txt /tmp/constraints.txt

# 3. The project itself, without dependencies (all installed above). Video decoding is PyAV's bundled
#    FFmpeg libraries: no ffmpeg binary, no apt packages.
COPY README.md ./
COPY src/ src/
RUN pip install --no-deps . && rm -rf build src/*.egg-info

COPY docker/entrypoint.sh /usr/local/bin/deepfake-entrypoint

# 4. An unprivileged user owning the models folder (uid 1000, the usual owner of a host folder mounted there).
RUN chmod 0755 /usr/local/bin/deepfake-entrypoint \
 && useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin deepfake \
 && mkdir /models \
 && chown deepfake:deepfake /models
USER 1000:1000
WORKDIR /home/deepfake

ENV DEEPFAKE_MODELS_DIR=/models \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

# 5. Optional: the model files inside the image (through the entrypoint: the same verify + pull as at start).
ARG BAKE_MODELS=0
ARG DEEPFAKE_WEIGHTS_MIRROR=""
RUN if [ "$BAKE_MODELS" = "1" ]; then DEEPFAKE_PULL_WEIGHTS=1 deepfake-entrypoint true; fi

VOLUME /models
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]
ENTRYPOINT ["deepfake-entrypoint"]
CMD ["deepfake-detect", "serve", "--host", "0.0.0.0", "--port", "8501"]
