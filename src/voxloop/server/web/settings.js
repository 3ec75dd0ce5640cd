// The settings drawer: persona, voice, end-of-turn silence and barge-in.
//
// Such options belong to the connection, not to the stored conversation, so what the
// user chose is kept for the tab (sessionStorage) and replayed onto every new session.

const SETTINGS_KEY = "voxloop.settings";

const formatSilence = (seconds) => `${Number(seconds).toFixed(1)} s`;

export class SettingsDrawer {
  // `ui`: the drawer's elements; `send(message)` is true when it went out; `hasOptions()`
  // says whether the server has told us the session's settings yet.
  constructor(ui, { send, hasOptions }) {
    this.ui = ui;
    this.send = send;
    this.hasOptions = hasOptions;
    this.desired = load(); // what the user chose
    this.inFlight = []; // one entry per `configure` sent: is its answer to be confirmed?
    this.personaDirty = false;
    this.noteTimer = null;

    ui.settingsToggle.addEventListener("click", () => this.open(ui.settings.hidden));
    ui.settingsClose.addEventListener("click", () => this.open(false));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !ui.settings.hidden) this.open(false);
    });
    ui.persona.addEventListener("input", () => (this.personaDirty = true));
    ui.settingsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const fields = { voice: ui.voice.value.trim() || "default" };
      if (this.personaDirty || !this.hasOptions()) fields.persona = ui.persona.value.trim();
      this.personaDirty = false;
      this.configure(fields);
    });
    ui.personaReset.addEventListener("click", () => {
      this.personaDirty = false;
      this.configure({ persona: "" }); // "" restores the server's default prompt
    });
    ui.eot.addEventListener("input", () => (ui.eotValue.value = formatSilence(ui.eot.value)));
    ui.eot.addEventListener("change", () => {
      this.configure({ end_of_turn_silence_s: Number(ui.eot.value) });
    });
    ui.bargeIn.addEventListener("change", () => this.configure({ barge_in: ui.bargeIn.checked }));
  }

  open(open) {
    const { ui } = this;
    ui.settings.hidden = !open;
    ui.settingsToggle.setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("settings-open", open);
    if (open) ui.persona.focus();
    else ui.settingsToggle.focus();
  }

  // Show the session's effective settings; an edit in progress survives unless `force`.
  fill(options, { force = false } = {}) {
    if (!options) return;
    const { ui } = this;
    if (force || !this.personaDirty) {
      ui.persona.value = options.persona ?? "";
      this.personaDirty = false;
    }
    ui.voice.value = options.voice ?? "default";
    ui.eot.value = options.end_of_turn_silence_s;
    ui.eotValue.value = formatSilence(options.end_of_turn_silence_s);
    ui.bargeIn.checked = Boolean(options.barge_in);
  }

  // A new session: show what it has, then replay what the user chose onto it.
  opened(options) {
    this.fill(options);
    if (Object.keys(this.desired).length) this.configure({ ...this.desired }, { quiet: true });
  }

  // The connection went: answers to what is in flight will never come.
  lost() {
    this.inFlight.length = 0;
  }

  // The server's answer to a `configure`: its effective settings.
  configured(options) {
    const quiet = this.inFlight.shift() ?? true;
    // Our own Apply shows the effective values; a quiet replay must not clobber an edit.
    this.fill(options, { force: !quiet });
    // An unknown voice is refused with an error and the old one kept: remember what the
    // server actually uses, or every reconnect would repeat the mistake.
    if ("voice" in this.desired) {
      this.desired.voice = options.voice;
      save(this.desired);
    }
    if (!quiet) this.note("Applied");
  }

  configure(fields, { quiet = false } = {}) {
    Object.assign(this.desired, fields);
    save(this.desired);
    if (this.send({ type: "configure", ...fields })) {
      this.inFlight.push(quiet);
      if (!quiet) this.note("Applying…", { pending: true });
    } else if (!quiet) {
      this.note("Saved · applies when the conversation starts");
    }
  }

  // A quiet confirmation inside the drawer, where the change was made.
  note(text, { pending = false } = {}) {
    const status = this.ui.settingsStatus;
    clearTimeout(this.noteTimer);
    status.textContent = text;
    status.classList.toggle("pending", pending);
    status.hidden = false;
    if (!pending) this.noteTimer = setTimeout(() => (status.hidden = true), 2500);
  }
}

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(SETTINGS_KEY)) || {};
  } catch {
    return {};
  }
}

function save(desired) {
  try {
    sessionStorage.setItem(SETTINGS_KEY, JSON.stringify(desired));
  } catch {
    // storage disabled: settings then last for this page only
  }
}
