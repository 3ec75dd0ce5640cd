// The voxloop browser app: wires the socket, the audio engine and the page together.
//
// The server is the source of truth for the conversation; this file keeps only what the
// page needs to draw it, and exposes a read-only snapshot as `window.voxloop` for tests
// and for anyone poking at it from the console.

import { AudioEngine, CAPTURE_RATE, FRAME_SAMPLES } from "./audio.js";
import { LatencyChart } from "./dashboard.js";
import { VoxClient } from "./protocol.js";
import { SettingsDrawer } from "./settings.js";
import { errorToast, toast as showToast } from "./toasts.js";
import { TranscriptView } from "./transcript.js";

const PLAYBACK_REPORT_MS = 90; // the worklet reports every 100 ms; pass each one on
const ERROR_HOLD_MS = 4000; // how long an error event keeps the indicator red
const SILENCE = new ArrayBuffer(FRAME_SAMPLES * 2); // zeros: what push-to-talk sends when released

const $ = (selector) => document.querySelector(selector);

const ui = {
  status: $('[data-testid="status"]'),
  statusLabel: $(".status-label"),
  statusDetail: $(".status-detail"),
  composer: $("#composer"),
  textInput: $("#text-input"),
  textSend: $('[data-testid="text-send"]'),
  modeRadios: [...document.querySelectorAll('input[name="mode"]')],
  start: $("#start"),
  end: $("#end"),
  ptt: $("#ptt"),
  pttLabel: $("#ptt .ptt-label"),
  startLabel: $("#start span"),
  interrupt: $("#interrupt"),
  level: $("#mic-level"),
  levelBar: $("#mic-level .level-bar"),
  settingsToggle: $("#settings-toggle"),
  settings: $("#settings"),
  settingsClose: $("#settings-close"),
  settingsForm: $("#settings-form"),
  settingsStatus: $("#settings-status"),
  persona: $("#persona"),
  voice: $("#voice"),
  personaReset: $("#persona-reset"),
  eot: $("#eot-silence"),
  eotValue: $("#eot-silence-value"),
  bargeIn: $("#barge-in"),
  newConversation: $("#new-conversation"),
  toasts: $("#toasts"),
};

const state = {
  active: false, // the user pressed Start and has not pressed End
  connection: "down", // down | connecting | open (a `session` event arrived)
  everOpened: false, // this conversation has had a working connection before
  retryAt: null,
  serverStatus: "idle",
  errorUntil: 0,
  mode: "handsfree",
  pttHeld: false,
  mic: false,
  level: 0,
  audioTurn: null, // the turn whose audio we are accepting (from tts_start)
  acceptingAudio: false,
  playback: { turn: null, ms: 0, bufferedMs: 0, playing: false },
  lastPlaybackSent: 0,
  lastPlaybackMs: 0,
  options: null, // the session's effective settings, as the server reports them
  offlineToast: null, // dismisses the "connection lost" notice
  turns: [], // every `metrics` event, in order
};

// A server that wants credentials (auth on, docs/security.md) gets the API key from the
// user once per tab; each connection then mints its own short-lived token with it.
const askApiKey = async () => window.prompt("This voxloop server needs an API key:");
const client = new VoxClient({ sampleRate: CAPTURE_RATE, askApiKey });
client.on("auth_failed", ({ message }) =>
  toast({ kind: "error", title: "Not signed in", message: `${message}. Retrying…` }),
);
const engine = new AudioEngine();
const view = new TranscriptView({
  scroll: $("#transcript-scroll"),
  list: $("#transcript"),
  emptyState: $("#empty-state"),
});
const toast = (options) => showToast(ui.toasts, options);
const settings = new SettingsDrawer(ui, {
  send: (message) => client.send(message),
  hasOptions: () => state.options !== null,
});
const chart = new LatencyChart({
  chart: $("#latency-chart"),
  legend: $("#latency-legend"),
  median: $("#latency-median"),
  medianNote: $("#latency-median-note"),
});

// ---------------------------------------------------------------------------------------
// The state indicator

const STATE_LABELS = {
  idle: "Idle",
  listening: "Listening",
  thinking: "Thinking",
  queued: "Waiting",
  speaking: "Speaking",
  error: "Error",
};

function displayState() {
  if (!state.active) return "idle";
  if (state.connection !== "open") return state.everOpened ? "error" : "idle";
  if (Date.now() < state.errorUntil) return "error";
  // The server says "listening" once it has sent the last audio, but up to ~0.6 s of it
  // may still be playing here: what the user hears wins.
  if (state.playback.playing) return "speaking";
  return state.serverStatus;
}

function statusDetail(current) {
  if (!state.active) return state.everOpened ? "Conversation ended" : "";
  if (state.connection !== "open") {
    if (!state.everOpened) return "Connecting…";
    if (state.retryAt) {
      const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      return seconds > 0 ? `Offline · retrying in ${seconds} s` : "Offline · reconnecting…";
    }
    return "Offline · reconnecting…";
  }
  if (current === "queued") {
    return state.queuePlace > 1 ? `In line · ${state.queuePlace - 1} ahead` : "Next in line";
  }
  if (!state.mic) return "Microphone off · type below";
  if (state.mode === "ptt" && current === "listening") {
    return state.pttHeld ? "Talking…" : "Hold Space to talk";
  }
  return "";
}

let lastRendered = "";
function renderStatus() {
  const current = displayState();
  const detail = statusDetail(current);
  const key = `${current}|${detail}`;
  if (key === lastRendered) return; // keeps the aria-live region quiet between changes
  lastRendered = key;
  document.body.dataset.state = current;
  ui.status.dataset.state = current;
  ui.statusLabel.textContent = STATE_LABELS[current];
  ui.statusDetail.textContent = detail;
}

function renderControls() {
  const open = state.connection === "open";
  ui.start.hidden = state.active;
  ui.end.hidden = !state.active;
  ui.textInput.disabled = ui.textSend.disabled = !open;
  ui.textInput.placeholder = open
    ? "Type a message…"
    : state.active
      ? "Waiting for the connection…"
      : "Start a conversation to type or talk";
  ui.interrupt.disabled = !open;
  ui.newConversation.disabled = !open;
  ui.ptt.hidden = state.mode !== "ptt" || !state.active;
  ui.ptt.disabled = !open || !state.mic;
  ui.level.hidden = !state.active || !state.mic;
  ui.level.classList.toggle("muted", state.mode === "ptt" && !state.pttHeld);
  renderStatus();
}

// Time-based states (error hold, retry countdown, playback tail) need a light tick.
setInterval(renderStatus, 250);

// ---------------------------------------------------------------------------------------
// Server events

client.on("open", () => {
  state.connection = "connecting";
  state.retryAt = null;
  renderControls();
});

client.on("close", ({ retryInMs, takenOver }) => {
  if (takenOver) {
    endConversation();
    toast({
      kind: "warn",
      title: "Open in another window",
      message: "This conversation went on in another tab or window. Start brings it back here.",
    });
    return;
  }
  const wasOpen = state.connection === "open";
  state.connection = "down";
  state.retryAt = retryInMs !== null ? Date.now() + retryInMs : null;
  // The server cancels an unfinished reply when the socket goes; stop playing it too.
  stopPlayback();
  settings.lost();
  if (wasOpen && state.active) {
    view.abandonOpen("connection lost");
    state.offlineToast ??= toast({
      kind: "error",
      title: "Connection lost",
      message: "Reconnecting automatically…",
      timeout: 0, // stays until the connection is back
    });
  }
  renderControls();
});

client.on("session", (msg) => {
  const wasOpen = state.everOpened;
  state.connection = "open";
  state.everOpened = true;
  state.options = msg.options;
  settings.opened(msg.options);
  view.connected(msg);
  if (msg.resumed && view.isEmpty) {
    view.divider(`Resumed conversation · ${msg.turns} earlier turn${msg.turns === 1 ? "" : "s"}`);
  } else if (wasOpen && !view.isEmpty) {
    view.divider(
      msg.resumed ? "Reconnected" : "Reconnected · the server has forgotten earlier turns",
    );
  }
  state.offlineToast?.();
  state.offlineToast = null;
  if (wasOpen)
    toast({ kind: "success", title: "Reconnected", message: "The conversation goes on." });
  renderControls();
  // The controls were disabled until now; put the keyboard where the user will want it.
  if (!wasOpen && (document.activeElement === document.body || !document.activeElement)) {
    (state.mode === "ptt" ? ui.ptt : ui.textInput).focus();
  }
});

client.on("status", (msg) => {
  state.serverStatus = msg.status;
  state.queuePlace = msg.status === "queued" ? msg.position : 0;
  state.errorUntil = 0; // a fresh status supersedes an earlier error
  if (msg.status === "thinking" || msg.status === "queued") view.claimPendingText(msg.turn_id);
  renderStatus();
});

client.on("partial_transcript", (msg) => view.partial(msg.turn_id, msg.text));

client.on("final_transcript", (msg) => {
  if (!msg.text) {
    // Noise, or too short to understand: no turn follows, so drop the placeholder.
    view.dropPartial(msg.turn_id);
    return;
  }
  const final = view.get("user", msg.turn_id);
  view.setText(final, msg.text);
  view.finish(final);
});

client.on("turn_continued", (msg) => view.forgetTurn(msg.turn_id));

client.on("false_interruption", (msg) => {
  // "Mm-hmm" (or the agent's own echo) over the agent: not a turn, and the agent went on.
  // The speech may go on a while: its later partials are not a turn either.
  view.dropPartial(msg.turn_id, { forget: true });
});

client.on("llm_status", (msg) => {
  view.claimPendingText(msg.turn_id);
  if (msg.status === "started") view.agent(msg.turn_id);
});

client.on("llm_response", (msg) => {
  view.claimPendingText(msg.turn_id);
  const b = view.agent(msg.turn_id);
  if (!b || b.done) return;
  if (!msg.is_complete) {
    view.setText(b, b.content + (msg.delta ?? ""));
    b.li.setAttribute("aria-busy", "true"); // still being written
    return;
  }
  if (msg.interrupted) {
    // `content` is what the user actually heard: cut the bubble there (nothing heard:
    // only the "interrupted" mark is left).
    view.setText(b, msg.content || "");
    view.cut(b, "interrupted");
    return;
  }
  view.setText(b, msg.content ?? b.content);
  view.finish(b);
});

// `metrics` closes a turn: whatever went wrong on the way, no "…" of it stays open.
client.on("metrics", (msg) => view.closeReply(msg.turn_id));

client.on("tts_start", (msg) => {
  state.audioTurn = msg.turn_id;
  state.acceptingAudio = true;
  state.playback = { turn: msg.turn_id, ms: 0, bufferedMs: 0, playing: false };
  engine.beginTurn(msg.turn_id, msg.sample_rate);
});

client.on("audio", (buffer) => {
  // Frames belong to the latest tts_start; after a tts_stop, stragglers are dropped.
  if (state.acceptingAudio) engine.play(buffer);
});

client.on("tts_end", () => {
  state.acceptingAudio = false; // the reply's audio is all here; let it play out
});

client.on("tts_stop", (msg) => {
  stopPlayback();
  // A cut, not a pause to check speech over the agent: speech let go earlier as a false
  // interruption has cut in after all, and its words count again.
  if (msg.reason !== "paused") view.undismiss();
});

// Cut the agent off here and now (the worklet goes quiet within one render quantum), and
// drop whatever audio of that reply is still on its way.
function stopPlayback() {
  state.acceptingAudio = false;
  state.audioTurn = null; // its final position reports are of no use to anyone
  state.playback = { ...state.playback, bufferedMs: 0, playing: false };
  engine.flush();
}

client.on("metrics", (msg) => {
  const { type: _type, session_id: _sid, ...figures } = msg;
  state.turns.push(figures);
  chart.add(figures);
  const b = view.find("agent", msg.turn_id);
  if (b && typeof msg.voice_to_voice_ms === "number") {
    const span = document.createElement("span");
    span.className = "latency-tag";
    span.textContent = `${(msg.voice_to_voice_ms / 1000).toFixed(2)} s`;
    span.title = "voice to voice: from the end of your speech to the agent's first audio";
    b.meta.prepend(span);
  }
});

client.on("configured", (msg) => {
  const { type: _type, session_id: _sid, ...options } = msg;
  state.options = options;
  settings.configured(options);
});

client.on("error", (msg) => {
  state.errorUntil = Date.now() + ERROR_HOLD_MS; // until the server's next status
  // A turn the server gave up on: its words will get no final transcript, or its reply
  // no complete text (the server says "listening" next).
  if (msg.turn_id !== undefined && msg.code === "stt_failed") view.dropPartial(msg.turn_id);
  if (msg.turn_id !== undefined && msg.code === "reply_failed") {
    view.closeReply(msg.turn_id, "failed");
  }
  toast(errorToast(msg.code, msg.message));
  renderStatus();
});

// ---------------------------------------------------------------------------------------
// Audio: microphone frames out, playback position back to the server

engine.onFrame = (pcm, level) => {
  state.level = Math.max(level, state.level);
  if (state.connection !== "open") return;
  // Push-to-talk sends silence while released, so the server's VAD hears the pause and
  // ends the turn as it would in hands-free mode.
  const muted = state.mode === "ptt" && !state.pttHeld;
  client.sendAudio(muted ? SILENCE : pcm);
};

engine.onPosition = (pos) => {
  if (pos.turn !== state.audioTurn) return;
  state.playback = pos;
  const now = performance.now();
  // Report while playing, throttled, plus the final position when the buffer runs dry.
  const due = now - state.lastPlaybackSent >= PLAYBACK_REPORT_MS || !pos.playing;
  if (pos.ms > 0 && due && pos.ms !== state.lastPlaybackMs) {
    state.lastPlaybackSent = now;
    state.lastPlaybackMs = pos.ms;
    client.send({ type: "playback", ms: Math.round(pos.ms), turn_id: pos.turn });
  }
};

engine.onError = (message) => {
  toast({ kind: "error", title: "Audio problem", message: `${message} Press End, then Start.` });
};

// The level meter: fast attack, slow release, on a log scale as ears hear it.
function drawLevel() {
  const db = 20 * Math.log10(Math.max(state.level, 1e-5));
  const fraction = Math.min(1, Math.max(0, (db + 60) / 54));
  ui.levelBar.style.transform = `scaleX(${fraction.toFixed(3)})`;
  state.level *= 0.85;
  requestAnimationFrame(drawLevel);
}
requestAnimationFrame(drawLevel);

// ---------------------------------------------------------------------------------------
// Controls

async function startConversation() {
  ui.start.disabled = true;
  ui.startLabel.textContent = "Starting…";
  try {
    const { mic, running } = await engine.start();
    state.mic = mic;
    if (!running) {
      toast({
        kind: "warn",
        title: "Sound is not running",
        message: "The browser has not started audio. Click anywhere on the page to enable it.",
      });
    }
    if (!mic) {
      toast({
        kind: "warn",
        title: "Microphone unavailable",
        message: `${engine.micError?.message || "Access was refused."} You can still type.`,
      });
    }
  } catch (err) {
    await engine.stop();
    toast({ kind: "error", title: "Audio could not start", message: String(err?.message || err) });
    ui.start.disabled = false;
    ui.startLabel.textContent = "Start";
    return;
  }
  ui.start.disabled = false;
  ui.startLabel.textContent = "Start";
  state.active = true;
  state.everOpened = false;
  client.connect();
  renderControls();
}

async function endConversation() {
  state.active = false;
  state.offlineToast?.();
  state.offlineToast = null;
  state.pttHeld = false;
  client.close();
  view.abandonOpen("ended");
  state.connection = "down";
  state.serverStatus = "idle";
  state.playback = { ...state.playback, playing: false };
  await engine.stop();
  renderControls();
  ui.start.focus();
}

ui.start.addEventListener("click", startConversation);
// A browser that kept audio suspended may allow it on a later gesture.
document.addEventListener("pointerdown", () => engine.resume());
document.addEventListener("keydown", () => engine.resume());
ui.end.addEventListener("click", endConversation);

ui.interrupt.addEventListener("click", () => {
  // The exact position first, so the server keeps precisely the words that were heard.
  const { turn, ms, playing } = state.playback;
  if (playing && turn === state.audioTurn && ms !== state.lastPlaybackMs) {
    client.send({ type: "playback", ms: Math.round(ms), turn_id: turn });
  }
  stopPlayback(); // do not wait for the round trip to go quiet
  client.send({ type: "interrupt" });
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const content = ui.textInput.value.trim();
  if (!content || !client.send({ type: "text", content })) return;
  view.typed(content);
  ui.textInput.value = "";
});

// Modes

for (const radio of ui.modeRadios) {
  radio.addEventListener("change", () => {
    state.mode = radio.value;
    state.pttHeld = false;
    renderControls();
  });
}

function setPtt(held) {
  if (held && (state.mode !== "ptt" || state.connection !== "open")) return;
  if (state.pttHeld === held) return;
  state.pttHeld = held;
  ui.ptt.setAttribute("aria-pressed", String(held));
  ui.ptt.classList.toggle("held", held);
  ui.pttLabel.textContent = held ? "Talking…" : "Hold to talk";
  renderControls();
}

ui.ptt.addEventListener("pointerdown", (event) => {
  ui.ptt.setPointerCapture(event.pointerId); // keep the release even if the pointer drifts
  setPtt(true);
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  ui.ptt.addEventListener(type, () => setPtt(false));
}
ui.ptt.addEventListener("contextmenu", (event) => event.preventDefault()); // long press

// Space is push-to-talk anywhere but in a form field, where it types or toggles.
function isFormField(target) {
  return target instanceof Element && target.closest("input, textarea, select, [contenteditable]");
}

window.addEventListener("keydown", (event) => {
  if (event.code !== "Space" || state.mode !== "ptt" || !state.active) return;
  if (isFormField(event.target)) return;
  event.preventDefault(); // no page scroll, no click on a focused button
  if (!event.repeat) setPtt(true);
});
window.addEventListener("keyup", (event) => {
  if (event.code !== "Space" || !state.pttHeld) return;
  event.preventDefault();
  setPtt(false);
});
window.addEventListener("blur", () => setPtt(false)); // a key released elsewhere never comes back

// ---------------------------------------------------------------------------------------
// Settings (settings.js) and a fresh start

ui.newConversation.addEventListener("click", () => {
  if (!client.send({ type: "reset" })) return;
  stopPlayback();
  view.clear();
  toast({ kind: "info", title: "New conversation", message: "The agent starts afresh." });
});

// ---------------------------------------------------------------------------------------
// A read-only window onto the app, for tests and the console

Object.defineProperty(window, "voxloop", {
  value: Object.freeze({
    get state() {
      return displayState();
    },
    get serverStatus() {
      return state.serverStatus;
    },
    get connected() {
      return state.connection === "open";
    },
    get sessionId() {
      return client.sessionId;
    },
    get mode() {
      return state.mode;
    },
    get playbackMs() {
      return state.playback.ms;
    },
    get playing() {
      return state.playback.playing;
    },
    get playbackTurn() {
      return state.playback.turn;
    },
    get turns() {
      return state.turns.map((t) => ({ ...t }));
    },
    get messages() {
      return view.snapshot();
    },
    get options() {
      return state.options ? { ...state.options } : null;
    },
  }),
});

renderControls();
