#!/usr/bin/env bash
# voxloop scaled out on one machine without Docker (docs/deployment.md, "Scale-out"):
#
#   nginx (:PORT) ──► N voxloop workers (:WORKER_PORT..) ──► Redis (sessions, hand-over)
#                                │
#                                ├─► model host: Wyoming speech (:SPEECH_PORT)
#                                └─► model host: OpenAI-compatible LLM (:LLM_PORT)
#
# The workers load no models of their own beyond the VAD (and the end-of-turn model): the
# speech and the LLM are served once, by `voxloop serve-models`, to all of them. Put the
# model host on its own machine by starting only that part there (`MODELS_HOST`).
#
#   deploy/scale-out.sh start      # start everything, wait until ready, print the URL
#   deploy/scale-out.sh stop       # stop what `start` started (from RUN_DIR/*.pid)
#   deploy/scale-out.sh status
#
# Settings (environment): PORT=8000 WORKERS=2 WORKER_PORT=8001 SPEECH_PORT=10300
# LLM_PORT=10400 REDIS_URL (default: start redis-server on REDIS_PORT=6379)
# MODELS_HOST=127.0.0.1 (set it to use a model host elsewhere: none is started here)
# RUN_DIR=.scale-out VOXLOOP=.venv/bin/voxloop. Every other VOXLOOP_* variable reaches the
# model host and the workers alike (e.g. VOXLOOP_LLM__PRESET=fast for the model host).
set -euo pipefail

PORT=${PORT:-8000}
WORKERS=${WORKERS:-2}
WORKER_PORT=${WORKER_PORT:-8001}
SPEECH_PORT=${SPEECH_PORT:-10300}
LLM_PORT=${LLM_PORT:-10400}
REDIS_PORT=${REDIS_PORT:-6379}
MODELS_HOST=${MODELS_HOST:-}
RUN_DIR=${RUN_DIR:-.scale-out}
VOXLOOP=${VOXLOOP:-.venv/bin/voxloop}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}

mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

log() { echo "scale-out: $*" >&2; }

started() { # name pid: remember what to stop
  echo "$2" >"$RUN_DIR/$1.pid"
}

alive() { # name: its process still runs, or say why not and give up
  local pid
  pid=$(cat "$RUN_DIR/$1.pid")
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$1 exited during start-up; the end of $RUN_DIR/$1.log:"
    tail -n 20 "$RUN_DIR/$1.log" >&2 || true
    exit 1
  fi
}

wait_tcp() { # port name
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    alive "$2"
    if ((SECONDS > deadline)); then
      log "$2 did not listen on port $1 within ${READY_TIMEOUT_S} s (see $RUN_DIR/*.log)"
      exit 1
    fi
    sleep 0.5
  done
}

wait_ready() { # port what: a worker's /readyz answers 200 once its models are warm
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until "$PYTHON" - "$1" <<'EOF' 2>/dev/null; do
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)
EOF
    alive "$2"
    if ((SECONDS > deadline)); then
      log "$2 was not ready on port $1 within ${READY_TIMEOUT_S} s (see $RUN_DIR/$2.log)"
      exit 1
    fi
    sleep 0.5
  done
}

start() {
  PYTHON=$(dirname "$VOXLOOP")/python
  [ -x "$PYTHON" ] || PYTHON=python3
  if [ -z "${REDIS_URL:-}" ]; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      >"$RUN_DIR/redis.log" 2>&1 &
    started redis $!
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
    wait_tcp "$REDIS_PORT" redis
  fi
  local models=${MODELS_HOST:-127.0.0.1}
  if [ -z "$MODELS_HOST" ]; then
    "$VOXLOOP" serve-models --host 127.0.0.1 --port "$SPEECH_PORT" --llm-port "$LLM_PORT" \
      >"$RUN_DIR/models.log" 2>&1 &
    started models $!
    wait_tcp "$LLM_PORT" models
    wait_tcp "$SPEECH_PORT" models
  fi
  # One token secret for all workers, so each accepts the tokens the others minted.
  local secret=${VOXLOOP_AUTH__TOKEN_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  local upstream=""
  for ((i = 0; i < WORKERS; i++)); do
    local port=$((WORKER_PORT + i))
    VOXLOOP_REDIS_URL=$REDIS_URL \
      VOXLOOP_AUTH__TOKEN_SECRET=$secret \
      VOXLOOP_STT__PROVIDER=wyoming VOXLOOP_STT__BASE_URL=tcp://$models:$SPEECH_PORT \
      VOXLOOP_TTS__PROVIDER=wyoming VOXLOOP_TTS__BASE_URL=tcp://$models:$SPEECH_PORT \
      VOXLOOP_LLM__PROVIDER=openai VOXLOOP_LLM__BASE_URL=http://$models:$LLM_PORT/v1 \
      VOXLOOP_LLM__MODEL=${VOXLOOP_LLM__MODEL:-voxloop} \
      VOXLOOP_LIMITS__TRUST_FORWARDED_FOR=true \
      "$VOXLOOP" serve --host 127.0.0.1 --port "$port" >"$RUN_DIR/worker$i.log" 2>&1 &
    started "worker$i" $!
    upstream+="    server 127.0.0.1:$port max_fails=1 fail_timeout=10s;"$'\n'
  done
  for ((i = 0; i < WORKERS; i++)); do
    wait_ready $((WORKER_PORT + i)) "worker$i"
  done
  cat >"$RUN_DIR/nginx.conf" <<EOF
# Written by deploy/scale-out.sh. WebSockets to any worker: no sticky sessions, since a
# session resumes on whichever worker its client lands (Redis holds it).
worker_processes 1;
pid $RUN_DIR/nginx-master.pid;
error_log $RUN_DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $RUN_DIR/nginx-body;
  proxy_temp_path $RUN_DIR/nginx-proxy;
  fastcgi_temp_path $RUN_DIR/nginx-fastcgi;
  uwsgi_temp_path $RUN_DIR/nginx-uwsgi;
  scgi_temp_path $RUN_DIR/nginx-scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream voxloop {
    least_conn;
$upstream  }
  server {
    listen 127.0.0.1:$PORT;
    location / {
      proxy_pass http://voxloop;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
      # A worker that is down: the next one takes the connection.
      proxy_next_upstream error timeout http_502 http_503;
      proxy_connect_timeout 2s;
    }
  }
}
EOF
  "$NGINX" -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -g 'daemon off;' >"$RUN_DIR/nginx.log" 2>&1 &
  started nginx $!
  wait_tcp "$PORT" nginx
  log "ready: http://127.0.0.1:$PORT ($WORKERS workers, model host ${models}, Redis $REDIS_URL)"
}

stop() {
  local any=0
  for name in nginx worker{0..63} models redis; do
    local file="$RUN_DIR/$name.pid"
    [ -f "$file" ] || continue
    kill "$(cat "$file")" 2>/dev/null || true
    rm -f "$file"
    any=1
  done
  ((any)) && log "stopped" || log "nothing to stop in $RUN_DIR"
}

status() {
  for file in "$RUN_DIR"/*.pid; do
    [ -f "$file" ] || continue
    local name pid
    name=$(basename "$file" .pid)
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then echo "$name: running ($pid)"; else echo "$name: gone"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
