// The conversation view: chat bubbles keyed by (role, turn id).
//
// Server events name their turn, so a bubble is found again by its key however the events
// interleave (a barge-in can open turn 4 while turn 3's reply is still being written).
// Typed messages are shown at once and get their turn id from the first event of the turn
// they started.

export class TranscriptView {
  constructor({ scroll, list, emptyState }) {
    this.scroll = scroll;
    this.list = list;
    this.emptyState = emptyState;
    this.bubbles = new Map(); // "user:3" -> bubble
    this.bubbleOf = new WeakMap(); // <li> -> bubble, typed ones without a turn id included
    this.pendingTexts = []; // typed messages waiting for their turn id
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
    this.append(li);
    const b = { li, text, meta, role, turn, content: "", done: false };
    this.bubbleOf.set(li, b);
    if (turn !== null) this.bubbles.set(`${role}:${turn}`, b);
    return b;
  }

  // The agent's bubble appears as soon as it starts thinking, with typing dots.
  agent(turn) {
    const existing = this.find("agent", turn);
    if (existing) return existing;
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

  badge(b, label, kind = "") {
    const badge = document.createElement("span");
    badge.className = `badge ${kind}`;
    badge.dataset.testid = "badge";
    badge.textContent = label;
    b.meta.append(badge);
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
  // what was said stays, marked; an empty placeholder goes.
  abandonOpen(reason) {
    for (const b of this.bubbles.values()) {
      if (b.done) continue;
      this.finish(b);
      if (b.role === "agent" || b.content) {
        b.li.classList.add("cut");
        this.badge(b, reason, "warn");
      } else {
        this.remove(b);
      }
    }
  }

  clear() {
    this.bubbles.clear();
    this.pendingTexts.length = 0;
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

  append(li) {
    this.list.append(li);
    this.emptyState.hidden = true;
    this.scrollDown();
  }

  scrollDown() {
    if (this.stickToBottom) this.scroll.scrollTop = this.scroll.scrollHeight;
  }
}
