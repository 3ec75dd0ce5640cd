// The /ws client: connect, start (or resume) a session, reconnect with backoff, dispatch.
//
// Binary frames are PCM16 audio; text frames are JSON. See docs/protocol.md.

const SESSION_KEY = "voxloop.sessionId";
const API_KEY = "voxloop.apiKey";
// Whom this tab's tokens act for: the server names a new user on the first mint, and a
// session belongs to its user, so later tokens must name the same one to resume it.
const USER_KEY = "voxloop.user";
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10000;

export function defaultSocketUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class VoxClient {
  // `askApiKey()` is called when the server wants credentials (docs/security.md): it
  // returns the API key (or null), which mints a short-lived token for each connection.
  constructor({ url = defaultSocketUrl(), sampleRate = 16000, askApiKey = null } = {}) {
    this.url = url;
    this.askApiKey = askApiKey;
    this.authRequired = null; // unknown until GET /api/auth answers
    this.sampleRate = sampleRate;
    this.ws = null;
    this.handlers = new Map();
    this.wanted = false; // the user wants a connection; false after close()
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = null;
    this.sessionId = readSessionId();
  }

  // Register a handler: a server event type ("session", "status", ...), "*" for every
  // event, "audio" for binary frames, or the connection events "open" and "close".
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.handlers.get(type).delete(handler);
  }

  emit(type, payload) {
    for (const handler of this.handlers.get(type) ?? []) handler(payload);
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    this.wanted = true;
    this.clearRetry();
    this.connecting = this.authorizedUrl()
      .then((url) => this.open(url))
      .catch((error) => {
        this.emit("auth_failed", { message: String(error.message ?? error) });
        if (this.wanted) this.scheduleRetry();
      });
  }

  // The socket URL, with a fresh session token when the server wants one: GET /api/auth
  // says whether it does, POST /api/tokens (with the API key) mints it.
  async authorizedUrl() {
    if (this.authRequired === null) {
      const answer = await fetch(new URL("/api/auth", httpBase(this.url)));
      this.authRequired = answer.ok ? Boolean((await answer.json()).required) : false;
    }
    if (!this.authRequired) return this.url;
    let key = readStored(API_KEY);
    if (!key && this.askApiKey) key = await this.askApiKey();
    if (!key) throw new Error("this server needs an API key");
    const user = readStored(USER_KEY);
    const answer = await fetch(new URL("/api/tokens", httpBase(this.url)), {
      method: "POST",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify(user ? { user } : {}),
    });
    if (answer.status === 401) {
      store(API_KEY, null); // a wrong key: ask again next time
      throw new Error("the API key was refused");
    }
    if (!answer.ok) throw new Error(`no session token: HTTP ${answer.status}`);
    store(API_KEY, key);
    const { token, user: actingFor } = await answer.json();
    store(USER_KEY, actingFor);
    const url = new URL(this.url);
    url.searchParams.set("token", token);
    return url.toString();
  }

  open(url) {
    if (!this.wanted || this.ws) return;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      // The saved id makes the server resume the conversation (history and persona).
      const start = { type: "start", sample_rate: this.sampleRate };
      if (this.sessionId) start.session_id = this.sessionId;
      ws.send(JSON.stringify(start));
      this.emit("open", { resuming: Boolean(this.sessionId) });
    };
    ws.onmessage = (event) => this.dispatch(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // an old socket closing after a newer one opened
      this.ws = null;
      // Another tab or window resumed this conversation (docs/protocol.md): taking it back
      // on our own would only close that one in turn, and so on for ever.
      const takenOver = event.code === 1000 && event.reason.startsWith("taken over");
      if (takenOver) this.wanted = false;
      // The saved conversation is not this tab's user's to open (docs/security.md): the
      // next connection starts a new one instead of being refused for ever.
      if (event.code === 4403) {
        this.sessionId = null;
        saveSessionId(null);
      }
      const retryInMs = this.wanted ? this.scheduleRetry() : null;
      this.emit("close", { code: event.code, reason: event.reason, retryInMs, takenOver });
    };
    // Errors are followed by a close event, which is where we recover.
    ws.onerror = () => {};
  }

  dispatch(data) {
    if (data instanceof ArrayBuffer) {
      this.emit("audio", data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // the server only sends JSON objects; ignore anything else
    }
    if (msg.type === "session") {
      this.sessionId = msg.session_id;
      saveSessionId(msg.session_id);
      this.attempt = 0; // a working session: the next outage starts the backoff afresh
    }
    this.emit(msg.type, msg);
    this.emit("*", msg);
  }

  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  sendAudio(buffer) {
    // Skip frames rather than queue them while the socket is congested: late audio is
    // worse than lost audio for a live conversation.
    if (!this.isOpen || this.ws.bufferedAmount > 64 * 1024) return false;
    this.ws.send(buffer);
    return true;
  }

  // Exponential backoff with jitter: 0.5 s doubling up to 10 s, each wait drawn from the
  // upper half of its range so that many clients do not reconnect in lockstep.
  scheduleRetry() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    return delay;
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  }

  // Reconnect now instead of waiting for the timer (the user asked for it).
  retryNow() {
    if (this.wanted && !this.ws) this.connect();
  }

  close() {
    this.wanted = false;
    this.clearRetry();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
      ws.close(1000, "bye");
      this.emit("close", { code: 1000, reason: "bye", retryInMs: null });
    }
  }

  // Forget the saved session: the next connection starts a new conversation.
  forgetSession() {
    this.sessionId = null;
    saveSessionId(null);
  }
}

function httpBase(socketUrl) {
  const url = new URL(socketUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.origin;
}

function readSessionId() {
  return readStored(SESSION_KEY);
}

function saveSessionId(id) {
  store(SESSION_KEY, id);
}

function readStored(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null; // storage can be disabled; resuming is then just not possible
  }
}

function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch {
    // as above
  }
}
