// Notices: short messages in a corner, announced by the aria-live container they live in.

const MAX_VISIBLE = 3;

// `details` (the technical message, for whoever reports the problem) sits folded under
// the plain-words message.
export function toast(
  container,
  { kind = "info", title, message = "", details = "", code = "", timeout = 6000 },
) {
  const node = document.createElement("div");
  node.className = `toast toast-${kind}`;
  node.dataset.testid = kind === "error" ? "error-toast" : "toast";
  if (code) node.dataset.code = code;
  const body = document.createElement("div");
  const heading = document.createElement("strong");
  heading.textContent = title;
  body.append(heading);
  if (message) {
    const text = document.createElement("p");
    text.textContent = message;
    body.append(text);
  }
  if (details) {
    const more = document.createElement("details");
    more.className = "toast-details";
    const summary = document.createElement("summary");
    summary.textContent = "Details";
    const text = document.createElement("code");
    text.dataset.testid = "error-details";
    text.textContent = details;
    more.append(summary, text);
    body.append(more);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  const dismiss = () => node.remove();
  close.addEventListener("click", dismiss);
  node.append(body, close);
  container.append(node);
  while (container.children.length > MAX_VISIBLE) container.firstElementChild.remove();
  // Errors stay longer: they are the ones worth reading. timeout 0 stays until dismissed.
  if (timeout) setTimeout(dismiss, kind === "error" ? timeout * 1.5 : timeout);
  return dismiss;
}

// What each of the server's stable error codes (docs/protocol.md, "Errors") means to the
// person talking, and what they can do: [headline, message]. The server's own message is
// technical ("ProviderCallError: LLM llama: ..."); it goes in the details.
const APP_FAULT = ["Something went wrong", "The app and the server disagree. Reload the page."];
const ERRORS = {
  stt_failed: ["Didn't catch that", "Your words could not be made out. Please say it again."],
  reply_failed: ["No answer", "The agent could not answer. Try again."],
  tts_failed: ["Speech cut short", "Part of the answer could not be spoken. It is shown here."],
  not_started: ["Not connected yet", "The conversation has not started. Press End, then Start."],
  unknown_voice: ["Voice not available", "That voice is not available. The default one is used."],
  bad_persona: ["Persona not loaded", "That persona could not be loaded. The default is used."],
  bad_session_id: ["New conversation", "The earlier conversation could not be resumed."],
  unsupported_sample_rate: [
    "Audio not supported",
    "The server cannot use this browser's audio. Try another browser.",
  ],
  store_unavailable: ["Not saving", "This conversation is not being saved. You can go on talking."],
  store_failed: ["Not saved", "The last turn could not be saved. The conversation goes on."],
  rate_limited: ["Too much at once", "Some audio was dropped. The conversation goes on."],
  text_too_long: ["Message too long", "Shorten the message and send it again."],
  frame_too_large: APP_FAULT,
  bad_json: APP_FAULT,
  bad_message: APP_FAULT,
  unknown_type: APP_FAULT,
  odd_frame_length: APP_FAULT,
  internal: ["Something went wrong", "The server had a problem. Try again."],
};

// A provider that gave nothing in time ("nothing within 30 s", "no answer within 8.0 s").
const TIMED_OUT = /\b(nothing|no answer|no transcript) within\b/;
const TOO_SLOW = {
  stt_failed: ["Didn't catch that", "Speech recognition took too long. Please say it again."],
  reply_failed: ["No answer", "The agent took too long to answer. Try again."],
  tts_failed: ["Speech cut short", "Speaking took too long. The answer is shown here."],
};

// The toast for an `error` event: plain words up front, the server's message in details
// (and in the console).
export function errorToast(code, message = "") {
  console.warn(`voxloop error ${code}: ${message}`);
  const slow = TIMED_OUT.test(message) ? TOO_SLOW[code] : undefined;
  const [title, text] = slow ??
    ERRORS[code] ?? ["Something went wrong", "The conversation goes on. Try again."];
  return { kind: "error", title, message: text, details: message, code };
}
