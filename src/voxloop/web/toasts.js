// Notices: short messages in a corner, announced by the aria-live container they live in.

const MAX_VISIBLE = 3;

export function toast(
  container,
  { kind = "info", title, message = "", code = "", timeout = 6000 },
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

// Friendlier titles for the server's stable error codes (docs/protocol.md).
const ERROR_TITLES = {
  not_started: "Not started",
  unknown_voice: "Unknown voice",
  stt_failed: "Speech recognition failed",
  reply_failed: "The reply failed",
  tts_failed: "Speech synthesis failed",
  bad_message: "Rejected message",
  unsupported_sample_rate: "Unsupported audio format",
};

export function errorTitle(code) {
  return ERROR_TITLES[code] ?? "Something went wrong";
}
