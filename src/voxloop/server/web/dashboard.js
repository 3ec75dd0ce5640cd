// The latency dashboard: one stacked horizontal bar per turn, drawn as SVG by hand.
//
// The bars come from the `breakdown_ms` of the server's `metrics` event: it splits the
// turn's voice-to-voice time into segments that add up to it exactly, so every
// millisecond the user waited has a name. Where steps overlap (a speculative reply works
// while the turn detector still waits), each moment is the earliest unfinished step's.
// Typed turns have no voice-to-voice, so no bar. Empty segments are not drawn.

const SVG = "http://www.w3.org/2000/svg";

export const SEGMENTS = [
  { key: "end_of_turn", label: "End of turn", hint: "end of speech → turn end", color: "#64748b" },
  { key: "stt", label: "Speech to text", hint: "turn end → final transcript", color: "#22d3ee" },
  {
    key: "wait",
    label: "Hand-off",
    hint: "transcript → reply under way (stopping the last reply, context)",
    color: "#a78bfa",
  },
  {
    key: "llm_queue",
    label: "LLM queue",
    hint: "waiting for the shared LLM, busy with another request",
    color: "#f97316",
  },
  { key: "llm", label: "LLM first token", hint: "request → first token", color: "#fbbf24" },
  { key: "tools", label: "Tools", hint: "tool calls running", color: "#34d399" },
  {
    key: "first_sentence",
    label: "First sentence",
    hint: "first token → first speakable sentence",
    color: "#fde68a",
  },
  { key: "tts", label: "TTS first audio", hint: "first sentence → its audio", color: "#f472b6" },
  { key: "send", label: "Send", hint: "audio → first frame sent", color: "#3a4152" },
];

const MAX_ROWS = 8; // the newest turns; older ones still count in the median
const MEDIAN_WINDOW = 10;
const ROW_H = 18;
const ROW_GAP = 10;
const LABEL_W = 34;
const VALUE_W = 58;
const AXIS_H = 22;

export class LatencyChart {
  constructor({ chart, legend, median, medianNote }) {
    this.chartEl = chart;
    this.medianEl = median;
    this.medianNoteEl = medianNote;
    this.legendEl = legend;
    this.turns = [];
    // Redraw at the real pixel width so text stays crisp and unscaled.
    this.width = 0;
    new ResizeObserver(() => {
      if (chart.clientWidth !== this.width) this.render(); // height changes are our own
    }).observe(chart);
    this.render();
  }

  add(metrics) {
    this.turns.push(metrics);
    this.render();
  }

  // Median voice-to-voice over the last MEDIAN_WINDOW turns that have one (text turns
  // have no end of speech, so they have none).
  medianVoiceToVoice() {
    const values = this.turns
      .map((t) => t.voice_to_voice_ms)
      .filter((v) => typeof v === "number")
      .slice(-MEDIAN_WINDOW)
      .sort((a, b) => a - b);
    if (!values.length) return null;
    const mid = values.length >> 1;
    return values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  }

  // The segments in the bars shown (all of them while there are none), in pipeline order.
  drawLegend(bars) {
    const seen = new Set(bars.flatMap((b) => b.segments.map((seg) => seg.index)));
    const shown = SEGMENTS.filter((_, i) => !seen.size || seen.has(i));
    this.legendEl.replaceChildren(
      ...shown.map((segment) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = segment.color;
        swatch.setAttribute("aria-hidden", "true");
        const text = document.createElement("span");
        text.textContent = segment.label;
        item.title = segment.hint;
        item.dataset.segment = segment.key;
        item.append(swatch, text);
        return item;
      }),
    );
  }

  render() {
    this.width = this.chartEl.clientWidth;
    const median = this.medianVoiceToVoice();
    const voiced = this.turns.filter((t) => typeof t.voice_to_voice_ms === "number").length;
    this.medianEl.textContent = median === null ? "–" : formatSeconds(median);
    this.medianEl.classList.toggle("empty", median === null);
    this.medianNoteEl.textContent = voiced
      ? `median of the last ${Math.min(voiced, MEDIAN_WINDOW)} spoken turn${voiced > 1 ? "s" : ""}`
      : "no spoken turns yet";

    const rows = this.turns.slice(-MAX_ROWS).reverse(); // newest on top
    const bars = rows.map(segmentsOf);
    this.drawLegend(bars);
    if (!rows.length) {
      this.chartEl.replaceChildren(emptyNote());
      return;
    }
    const width = Math.max(240, this.width);
    const plotW = width - LABEL_W - VALUE_W;
    const scaleMax = niceCeiling(Math.max(...bars.map((b) => b.total), 100));
    const x = (ms) => LABEL_W + (ms / scaleMax) * plotW;
    const height = rows.length * (ROW_H + ROW_GAP) + AXIS_H;

    const svg = el("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Latency of the last ${rows.length} turns`,
    });

    // Grid lines and the time axis, drawn first so the bars sit on top.
    const plotBottom = rows.length * (ROW_H + ROW_GAP);
    for (const tick of ticks(scaleMax)) {
      svg.append(
        el("line", { class: "grid", x1: x(tick), x2: x(tick), y1: 0, y2: plotBottom - 4 }),
        text(formatTick(tick), {
          class: "axis",
          x: x(tick),
          y: plotBottom + 12,
          "text-anchor": "middle",
        }),
      );
    }

    rows.forEach((turn, row) => {
      const y = row * (ROW_H + ROW_GAP) + ROW_GAP / 2;
      const bar = bars[row];
      const group = el("g", {
        class: "bar",
        "data-testid": "latency-bar",
        "data-turn": turn.turn_id,
      });
      const summary = el("title");
      summary.textContent = describe(turn, bar);
      group.append(
        summary,
        text(`#${turn.turn_id}`, {
          class: "row-label",
          x: 0,
          y: y + ROW_H / 2,
          "dominant-baseline": "central",
        }),
      );
      let start = 0;
      for (const seg of bar.segments) {
        const segment = SEGMENTS[seg.index];
        const rect = el("rect", {
          class: "seg",
          style: `fill: ${segment.color}`,
          "data-segment": segment.key,
          "data-ms": seg.ms,
          x: x(start),
          y,
          width: Math.max(1, x(start + seg.ms) - x(start) - 1), // 1 px gap between segments
          height: ROW_H,
          rx: 3,
        });
        const title = el("title");
        title.textContent = `${segment.label}: ${formatMs(seg.ms)}`;
        rect.append(title);
        group.append(rect);
        start += seg.ms;
      }
      if (bar.v2v !== null) {
        group.append(
          el("line", {
            class: "total-mark",
            x1: x(bar.v2v),
            x2: x(bar.v2v),
            y1: y - 3,
            y2: y + ROW_H + 3,
          }),
        );
      }
      const value =
        bar.v2v !== null ? formatSeconds(bar.v2v) : turn.source === "text" ? "text" : "—";
      const label = text(value, {
        class: bar.v2v !== null ? "row-value" : "row-value muted",
        x: width,
        y: y + ROW_H / 2,
        "text-anchor": "end",
        "dominant-baseline": "central",
      });
      if (turn.interrupted) {
        const title = el("title");
        title.textContent = "this reply was interrupted";
        label.append(title);
      }
      group.append(label);
      svg.append(group);
    });
    this.chartEl.replaceChildren(svg);
  }
}

function segmentsOf(turn) {
  const v2v = typeof turn.voice_to_voice_ms === "number" ? turn.voice_to_voice_ms : null;
  const parts = turn.breakdown_ms ?? {};
  const segments = [];
  SEGMENTS.forEach((segment, index) => {
    const ms = parts[segment.key];
    if (typeof ms === "number" && ms > 0) segments.push({ index, ms });
  });
  const sum = segments.reduce((total, seg) => total + seg.ms, 0);
  return { segments, v2v, total: Math.max(sum, v2v ?? 0) };
}

// The bar in words: "#3: 10.30 s = End of turn 350 ms + First sentence 9.60 s + ...".
function describe(turn, bar) {
  if (bar.v2v === null) return `#${turn.turn_id}: ${turn.source === "text" ? "typed" : "no audio"}`;
  const parts = bar.segments.map((seg) => `${SEGMENTS[seg.index].label} ${formatMs(seg.ms)}`);
  return `#${turn.turn_id}: ${formatSeconds(bar.v2v)} = ${parts.join(" + ") || "nothing"}`;
}

// The smallest 1-2-5 step multiple that covers `ms`, so the axis has round numbers.
function niceCeiling(ms) {
  const step = niceStep(ms);
  return Math.ceil(ms / step) * step;
}

function niceStep(ms) {
  const raw = ms / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw);
  return unit * power;
}

function ticks(max) {
  const step = niceStep(max);
  const out = [];
  for (let t = 0; t <= max + 1e-6; t += step) out.push(t);
  return out;
}

function formatSeconds(ms) {
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 1000).toFixed(2)} s`;
}

function formatMs(ms) {
  return ms >= 1000 ? formatSeconds(ms) : `${Math.round(ms)} ms`;
}

function formatTick(ms) {
  if (ms === 0) return "0";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${+(ms / 1000).toFixed(1)} s`;
}

function el(name, attrs = {}) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function text(content, attrs) {
  const node = el("text", attrs);
  node.textContent = content;
  return node;
}

function emptyNote() {
  const p = document.createElement("p");
  p.className = "chart-empty";
  p.textContent =
    "Each reply adds a bar here: where the wait between your words and the agent's voice went.";
  return p;
}
