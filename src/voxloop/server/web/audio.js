// Audio setup: one AudioContext for both the microphone and the agent's voice.
//
// One context (rather than two) keeps capture and playback on the same clock and lets the
// browser's echo canceller see what we play. The heavy lifting happens in the two worklets.

export const CAPTURE_RATE = 16000; // what we send; the server's models run at 16 kHz
export const FRAME_SAMPLES = 320; // 20 ms at 16 kHz = 640 bytes per frame

export class AudioEngine {
  constructor() {
    this.context = null;
    this.stream = null;
    this.capture = null;
    this.player = null;
    this.micError = null;
    this.onFrame = () => {}; // (ArrayBuffer pcm16, level 0..1)
    this.onPosition = () => {}; // ({turn, ms, bufferedMs, playing})
    this.onError = () => {}; // (message): a worklet crashed; audio in that direction stops
  }

  // Must be called from a user gesture (a click): browsers keep audio suspended otherwise.
  async start() {
    this.context = new AudioContext({ latencyHint: "interactive" });
    const resumed = this.context.resume(); // inside the gesture, before any await
    // Worklet URLs are resolved relative to this module, so the app works under any path.
    const worklet = this.context.audioWorklet;
    await Promise.all([
      worklet.addModule(new URL("./capture-worklet.js", import.meta.url).href),
      worklet.addModule(new URL("./playback-worklet.js", import.meta.url).href),
    ]);
    // Without any audio output device resume() may never settle; typing still works then,
    // so wait a moment rather than forever.
    await Promise.race([resumed, new Promise((resolve) => setTimeout(resolve, 1500))]);

    this.player = new AudioWorkletNode(this.context, "voxloop-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this.player.port.onmessage = (event) => this.onPosition(event.data);
    this.player.onprocessorerror = () => this.onError("Playback stopped working.");
    this.player.connect(this.context.destination);

    try {
      await this.startMic();
    } catch (err) {
      // No microphone (denied, absent, insecure origin): typing and listening still work.
      this.micError = err;
    }
    return { mic: !this.micError, running: this.running };
  }

  async startMic() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("This page has no microphone access (it needs https or localhost).");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: true, // so the agent does not hear (and barge in on) itself
        noiseSuppression: true,
        autoGainControl: true,
      },
    });
    const source = this.context.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.context, "voxloop-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit", // downmix a stereo mic to mono before the worklet
      processorOptions: { targetRate: CAPTURE_RATE, frameSamples: FRAME_SAMPLES },
    });
    this.capture.port.onmessage = (event) => this.onFrame(event.data.pcm, event.data.level);
    this.capture.onprocessorerror = () => this.onError("Microphone capture stopped working.");
    // A muted path to the destination: some engines only render nodes that reach it.
    const mute = new GainNode(this.context, { gain: 0 });
    source.connect(this.capture).connect(mute).connect(this.context.destination);
  }

  get running() {
    return this.context?.state === "running";
  }

  // Try again from a later user gesture, for browsers that refused the first one.
  resume() {
    if (this.context && this.context.state === "suspended") this.context.resume();
  }

  // A new reply starts: drop anything left of the previous one and reset the count.
  beginTurn(turn, rate) {
    this.player?.port.postMessage({ type: "turn", turn, rate });
  }

  play(buffer) {
    this.player?.port.postMessage({ type: "pcm", pcm: buffer }, [buffer]);
  }

  flush() {
    this.player?.port.postMessage({ type: "flush" });
  }

  async stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    const context = this.context;
    this.context = this.capture = this.player = null;
    this.micError = null;
    if (context && context.state !== "closed") await context.close();
  }
}
