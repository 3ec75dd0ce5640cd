// The conversation view: chat bubbles keyed by (role, turn id).
//
// Server events name their turn, so a bubble is found again by its key however the events
// interleave (a barge-in can open turn 4 while turn 3's reply is still being written).
// Typed messages are shown at once and get their turn id from the first event of the turn
// they started. A bubble never stays open for a turn the server has given up on: a user's
// partial words go when the server says they will get no final transcript, and an agent
// reply that ends with no words heard is a marker (its badge), never an empty bubble.

export class TranscriptView {
  constructor({ scroll, list, emptyState }) {
    this.scroll = scroll;
    this.list = list;
    this.emptyState = emptyState;
    this.bubbles = new Map(); // "user:3" -> bubble
    this.bubbleOf = new WeakMap(); // <li> -> bubble, typed ones without a turn id included
    this.pendingTexts = []; // typed messages waiting for their turn id
    this.dismissed = new Set(); // user turns that are not turns (false interruptions)
    this.closed = new Set(); // agent turns that ended without a bubble (a failed reply)
    this.epoch = 0; // counts server sessions that numbered their turns afresh
    this.stickToBottom = true;
    // Follow new messages, unless the user scrolled up to read something.
    scroll.addEventListener("scroll", () => {
      const { scrollTop, scrollHeight, clientHeight } = scroll;
      this.stickToBottom = scrollHeight - scrollTop - clientHeight < 40;
    });
  }

  get isEmpty() {
    return this.list.children.length === 0;
  }

  find(role, turn) {
    return this.bubbles.get(`${role}:${turn}`);
  }

  get(role, turn) {
    return this.find(role, turn) ?? this.create(role, turn);
  }

  create(role, turn) {
    const li = document.createElement("li");
    li.className = `msg msg-${role}`;
    li.dataset.testid = "message";
    li.dataset.role = role;
    if (turn !== null) li.dataset.turn = turn;
    const who = document.createElement("span");
    who.className = "msg-who";
    who.textContent = role === "user" ? "You" : "voxloop";
    const body = document.createElement("div");
    body.className = "msg-body";
    const text = document.createElement("p");
    text.className = "msg-text";
    const meta = document.createElement("div");
    meta.className = "msg-meta";
    body.append(text);
    li.append(who, body, meta);
    this.append(li, role === "user" ? turn : null);
    const b = { li, text, meta, role, turn, content: "", done: false, epoch: this.epoch };
    this.bubbleOf.set(li, b);
    if (turn !== null) this.bubbles.set(`${role}:${turn}`, b);
    return b;
  }

  // A new connection: no utterance outlives it, and a session the server did not resume
  // numbers its turns from 1 again. The bubbles on screen stay, no longer found by turn.
  connected({ resumed }) {
    this.dismissed.clear();
    if (resumed) return;
    this.bubbles.clear();
    this.closed.clear();
    this.epoch += 1;
  }

  // The agent's bubble appears as soon as it starts thinking, with typing dots; null for a
  // turn already closed (its events can come after the error that ended it).
  agent(turn) {
    const existing = this.find("agent", turn);
    if (existing) return existing;
    if (this.closed.has(turn)) return null;
    const b = this.create("agent", turn);
    b.li.classList.add("streaming");
    b.li.setAttribute("aria-busy", "true");
    return b;
  }

  typed(content) {
    const b = this.create("user", null);
    this.setText(b, content);
    b.done = true;
    b.li.classList.add("typed");
    this.pendingTexts.push(b);
    return b;
  }

  claimPendingText(turn) {
    if (turn === undefined || this.find("user", turn) || !this.pendingTexts.length) return;
    const b = this.pendingTexts.shift();
    b.turn = turn;
    b.li.dataset.turn = turn;
    this.bubbles.set(`user:${turn}`, b);
  }

  // The user's words so far. Once a later turn speaks, an earlier turn's unfinished words
  // will not be finished (a late final transcript puts them back, in turn order).
  partial(turn, content) {
    if (this.dismissed.has(turn)) return; // speech over the agent that was let go
    for (const b of [...this.bubbles.values()]) {
      if (b.role === "user" && !b.done && b.turn < turn) this.remove(b);
    }
    const b = this.get("user", turn);
    if (!b.done) this.setText(b, content, { partial: true });
  }

  // The server will never finish this turn's words: not a turn (`forget` also ignores its
  // later partials, as the speech may go on), or the speech recognizer gave up.
  dropPartial(turn, { forget = false } = {}) {
    if (forget) this.dismissed.add(turn);
    const b = this.find("user", turn);
    if (b && !b.done) this.remove(b);
  }

  // Speech over the agent cut in after all: its words count again.
  undismiss() {
    this.dismissed.clear();
  }

  setText(b, content, { partial = false } = {}) {
    b.content = content;
    b.text.textContent = content;
    b.li.classList.toggle("partial", partial);
    b.li.setAttribute("aria-busy", String(partial)); // announce it once, when final
    this.scrollDown();
  }

  finish(b) {
    b.done = true;
    b.li.classList.remove("streaming", "partial");
    b.li.removeAttribute("aria-busy");
  }

  // The reply was cut: what was heard stays, marked; with nothing heard only the mark is
  // left (the `empty` class hides the bubble's body).
  cut(b, label) {
    this.finish(b);
    b.li.classList.add("cut");
    b.li.classList.toggle("empty", !b.content);
    this.badge(b, label, "warn");
  }

  // The reply of `turn` is over without a complete `llm_response` (it failed, or its
  // metrics came first): an unfinished bubble is closed, a pending "…" one removed.
  closeReply(turn, label = "") {
    this.closed.add(turn);
    const b = this.find("agent", turn);
    if (!b || b.done) return;
    if (!b.content) this.remove(b);
    else if (label) this.cut(b, label);
    else this.finish(b);
  }

  badge(b, label, kind = "") {
    const badge = document.createElement("span");
    badge.className = `badge ${kind}`;
    badge.dataset.testid = "badge";
    badge.textContent = label;
    b.meta.append(badge);
  }

  // The user went on before the agent spoke: that turn's words are carried into the next
  // turn (whose bubble shows them all), and its unspoken reply never happened.
  forgetTurn(turn) {
    for (const role of ["user", "agent"]) {
      const b = this.find(role, turn);
      if (b) this.remove(b);
    }
    this.closed.add(turn);
  }

  remove(b) {
    b.li.remove();
    if (b.turn !== null) this.bubbles.delete(`${b.role}:${b.turn}`);
  }

  divider(label) {
    const li = document.createElement("li");
    li.className = "divider";
    li.setAttribute("role", "separator");
    li.textContent = label;
    this.append(li);
  }

  // Close bubbles that will never be finished (the connection dropped, the user ended):
  // what was said stays, marked; a reply with no words is just the mark; an empty user
  // placeholder goes.
  abandonOpen(reason) {
    for (const b of [...this.bubbles.values()]) {
      if (b.done) continue;
      if (b.role === "agent" || b.content) this.cut(b, reason);
      else this.remove(b);
    }
  }

  clear() {
    this.bubbles.clear();
    this.pendingTexts.length = 0;
    this.dismissed.clear();
    this.closed.clear();
    this.list.replaceChildren();
    this.emptyState.hidden = false;
  }

  // A plain-data copy, in screen order, for window.voxloop.
  snapshot() {
    return [...this.list.querySelectorAll(".msg")].map((li) => {
      const b = this.bubbleOf.get(li);
      return {
        role: b.role,
        turn: b.turn,
        text: b.content,
        done: b.done,
        interrupted: li.classList.contains("cut"),
      };
    });
  }

  // At the end, or for a user turn, before the later turns' bubbles (back to a divider):
  // a final transcript can come after the next turn's first words.
  append(li, turn = null) {
    let next = null;
    if (turn !== null) {
      for (let el = this.list.lastElementChild; el?.classList.contains("msg"); ) {
        const other = this.bubbleOf.get(el);
        const later = other.turn > turn || (other.turn === turn && other.role === "agent");
        if (other.turn === null || other.epoch !== this.epoch || !later) break;
        next = el;
        el = el.previousElementSibling;
      }
    }
    this.list.insertBefore(li, next);
    this.emptyState.hidden = true;
    this.scrollDown();
  }

  scrollDown() {
    if (this.stickToBottom) this.scroll.scrollTop = this.scroll.scrollHeight;
  }
}
