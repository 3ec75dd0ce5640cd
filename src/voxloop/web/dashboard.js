// The latency dashboard: one stacked horizontal bar per turn, drawn as SVG by hand.
//
// Stages come from the server's `metrics` event. They run one after another, so stacking
// them shows where a turn's voice-to-voice time went; what the stages do not cover (the
// LLM writing its first sentence, queueing) is drawn as "other". Null stages are skipped.

const SVG = "http://www.w3.org/2000/svg";

export const STAGES = [
  { key: "vad_end_of_turn_ms", label: "End of turn", hint: "end of speech → turn end" },
  { key: "stt_final_ms", label: "Speech to text", hint: "turn end → final transcript" },
  { key: "llm_first_token_ms", label: "LLM first token", hint: "request → first token" },
  { key: "tts_first_audio_ms", label: "TTS first audio", hint: "first sentence → audio" },
  {
    key: "other",
    label: "First sentence & other",
    hint: "the LLM writing its first sentence, queueing",
  },
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
    this.turns = [];
    this.drawLegend(legend);
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

  drawLegend(list) {
    list.replaceChildren(
      ...STAGES.map((stage, i) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = `swatch stage-${i}`;
        swatch.setAttribute("aria-hidden", "true");
        const text = document.createElement("span");
        text.textContent = stage.label;
        item.title = stage.hint;
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
    if (!rows.length) {
      this.chartEl.replaceChildren(emptyNote());
      return;
    }
    const width = Math.max(240, this.width);
    const plotW = width - LABEL_W - VALUE_W;
    const bars = rows.map(segmentsOf);
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
      group.append(
        text(`#${turn.turn_id}`, {
          class: "row-label",
          x: 0,
          y: y + ROW_H / 2,
          "dominant-baseline": "central",
        }),
      );
      let start = 0;
      for (const seg of bar.segments) {
        const rect = el("rect", {
          class: `seg stage-${seg.stage}`,
          x: x(start),
          y,
          width: Math.max(1, x(start + seg.ms) - x(start) - 1), // 1 px gap between stages
          height: ROW_H,
          rx: 3,
        });
        const title = el("title");
        title.textContent = `${STAGES[seg.stage].label}: ${Math.round(seg.ms)} ms`;
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
  const segments = [];
  let sum = 0;
  STAGES.forEach((stage, i) => {
    const ms = turn[stage.key];
    if (typeof ms === "number" && ms > 0) {
      segments.push({ stage: i, ms });
      sum += ms;
    }
  });
  const v2v = typeof turn.voice_to_voice_ms === "number" ? turn.voice_to_voice_ms : null;
  // Whatever the measured stages leave of the total is still time the user waited.
  if (v2v !== null && v2v - sum > 1) {
    segments.push({ stage: STAGES.length - 1, ms: v2v - sum });
    sum = v2v;
  }
  return { segments, v2v, total: Math.max(sum, v2v ?? 0) };
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
