// Microphone capture: device-rate float audio in, 16 kHz PCM16 frames out.
//
// Runs on the audio rendering thread. The AudioContext runs at the device rate (often
// 48000 or 44100), but the server wants 16 kHz, so the worklet low-pass filters, resamples
// with linear interpolation and packs fixed-size frames. Doing it here keeps the main
// thread free of per-sample work and gives frames at a steady cadence.

const TAPS = 31; // odd, so the filter has a centre tap and a whole-sample delay

// A windowed-sinc low-pass (Blackman window). Without it, speech energy above the new
// Nyquist frequency would fold back into the band the speech recogniser listens to.
function lowpass(cutoff) {
  const h = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let n = 0; n < TAPS; n++) {
    const x = n - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w =
      0.42 -
      0.5 * Math.cos((2 * Math.PI * n) / (TAPS - 1)) +
      0.08 * Math.cos((4 * Math.PI * n) / (TAPS - 1));
    h[n] = sinc * w;
    sum += h[n];
  }
  for (let n = 0; n < TAPS; n++) h[n] /= sum; // unity gain at DC
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.outRate = opts.targetRate || 16000;
    this.frameSamples = opts.frameSamples || 320; // 20 ms at 16 kHz
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.step = sampleRate / this.outRate; // input samples per output sample
    // Filter only when downsampling; the cutoff leaves a little room below Nyquist.
    this.taps = this.step > 1.001 ? lowpass((0.45 * this.outRate) / sampleRate) : null;
    this.history = new Float32Array(TAPS * 2); // doubled, so a window is always contiguous
    this.hpos = 0;
    this.prev = 0; // the previous (filtered) input sample
    this.t = 0; // where the next output sample lies, in input samples after `prev`
  }

  filter(x) {
    if (!this.taps) return x;
    // Write each sample twice so history[hpos .. hpos+TAPS) is the latest window.
    this.history[this.hpos] = x;
    this.history[this.hpos + TAPS] = x;
    this.hpos = (this.hpos + 1) % TAPS;
    let acc = 0;
    for (let k = 0; k < TAPS; k++) acc += this.taps[k] * this.history[this.hpos + k];
    return acc;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.sumSquares += s * s;
    // Int16Array is in platform byte order, which is little-endian on every platform a
    // browser ships on, so the buffer is already the wire format (PCM16 LE).
    this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.frameSamples) {
      const level = Math.sqrt(this.sumSquares / this.frameSamples);
      // Transfer the buffer (no copy; it is detached afterwards) and start a fresh one.
      const buffer = this.frame.buffer;
      this.port.postMessage({ pcm: buffer, level }, [buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no mic connected yet: stay alive
    for (let i = 0; i < channel.length; i++) {
      const x = this.filter(channel[i]);
      while (this.t <= 1) {
        this.emit(this.prev + (x - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = x;
    }
    return true;
  }
}

registerProcessor("voxloop-capture", CaptureProcessor);
