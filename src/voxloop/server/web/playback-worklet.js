// Agent speech playback: a ring buffer of source-rate samples, resampled on output.
//
// The server sends PCM16 at the TTS rate (22050 Hz with the embedded voice); the context
// runs at the device rate. Resampling here, per output sample, means a flush takes effect
// on the very next 128-frame render quantum, and the sample count we report is what was
// actually played, not what was merely queued.
//
// Messages from the main thread:
//   {type: "turn", turn, rate}  a new reply starts: drop anything older, reset the count
//   {type: "pcm", pcm}          an ArrayBuffer of PCM16 LE samples for the current turn
//   {type: "flush"}             stop now (barge-in, interrupt, disconnect)
// Messages to the main thread:
//   {type: "position", turn, ms, bufferedMs, playing}  about every REPORT_S while playing

const CAPACITY = 1 << 21; // samples; ~95 s at 22050 Hz, far beyond the server's 0.6 s lead
const MASK = CAPACITY - 1;
const REPORT_S = 0.1;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(CAPACITY);
    this.readPos = 0; // monotonic sample counters; index with & MASK
    this.writePos = 0;
    this.frac = 0; // fractional read position between readPos and readPos + 1
    this.srcRate = sampleRate;
    this.turn = null;
    this.played = 0; // source samples of this turn played so far
    this.sinceReport = 0; // output frames since the last position report
    this.wasPlaying = false;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    if (msg.type === "pcm") {
      const pcm = new Int16Array(msg.pcm);
      const room = CAPACITY - (this.writePos - this.readPos);
      const n = Math.min(pcm.length, room); // overflow would mean a runaway server: drop
      for (let i = 0; i < n; i++) this.ring[(this.writePos + i) & MASK] = pcm[i] / 32768;
      this.writePos += n;
    } else if (msg.type === "turn") {
      this.clear();
      this.turn = msg.turn;
      this.srcRate = msg.rate;
      this.played = 0;
      this.report();
    } else if (msg.type === "flush") {
      this.clear();
      this.report();
    }
  }

  clear() {
    this.readPos = this.writePos;
    this.frac = 0;
  }

  report() {
    this.sinceReport = 0;
    const buffered = this.writePos - this.readPos;
    this.port.postMessage({
      type: "position",
      turn: this.turn,
      ms: (this.played / this.srcRate) * 1000,
      bufferedMs: (buffered / this.srcRate) * 1000,
      playing: buffered > 0,
    });
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const left = out[0];
    const step = this.srcRate / sampleRate; // source samples per output frame
    let i = 0;
    for (; i < left.length; i++) {
      const available = this.writePos - this.readPos;
      if (available <= 0) break;
      const a = this.ring[this.readPos & MASK];
      // At the very end of the buffer there is no next sample yet: hold the last one.
      const b = available > 1 ? this.ring[(this.readPos + 1) & MASK] : a;
      left[i] = a + (b - a) * this.frac;
      this.frac += step;
      while (this.frac >= 1 && this.writePos - this.readPos > 0) {
        this.frac -= 1;
        this.readPos += 1;
        this.played += 1;
      }
    }
    for (; i < left.length; i++) left[i] = 0; // underrun or idle: silence
    for (let c = 1; c < out.length; c++) out[c].set(left);

    const playing = this.writePos - this.readPos > 0;
    if (playing || this.wasPlaying) {
      this.sinceReport += left.length;
      // Report steadily while playing, and once more when the buffer runs dry.
      if (this.sinceReport >= sampleRate * REPORT_S || !playing) this.report();
    }
    this.wasPlaying = playing;
    return true; // keep rendering: replies come and go for the whole session
  }
}

registerProcessor("voxloop-playback", PlaybackProcessor);
