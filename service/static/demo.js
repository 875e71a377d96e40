// PKDOT live demo: webcam -> JPEG frames over /ws/stream -> live pain gauge or valence/arousal circumplex.
//
// Flow control: a frame is captured every 1/fps seconds, and sent only while fewer than `window` frames wait for
// their answer (otherwise it is skipped and counted), so the page never floods the server. The server answers
// each frame it processes with a JSON result whose `seq` is the frame's 0-based number on this connection; a frame
// the server dropped (a newer one replaced it while it waited) gets no answer, so an answer for `seq` settles
// every earlier frame still waiting. Plain browser APIs only (getUserMedia, canvas, WebSocket): no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PAIN_LABELS = ["BL1", "PA1", "PA2", "PA3", "PA4"];
  const PAIN_COLOURS = ["#3fb950", "#9bc53d", "#d29922", "#f0883e", "#f85149"];
  const MAX_WIDTH = 640; // frames are scaled down to this width before JPEG encoding
  const JPEG_QUALITY = 0.8;
  const TIMELINE_S = 60;
  const TRAIL_S = 10;
  const ANSWER_TIMEOUT_MS = 15000; // a frame unanswered this long is given up (its slot in the window is freed)
  const NO_FACE_AFTER = 3; // consecutive answers without a face before the page says so
  const CALIBRATION_S = 3;

  const ui = {
    form: $("controls"), start: $("start"), calibrate: $("calibrate"), reset: $("reset"),
    model: $("model"), fps: $("fps"), window: $("window"), key: $("api-key"), keyField: $("key-field"),
    message: $("message"), status: $("server-status"), stage: $("stage"), note: $("stage-note"),
    video: $("video"), overlay: $("overlay"), gauge: $("gauge"), timeline: $("timeline"), circumplex: $("circumplex"),
    probs: $("probs"), painPanel: $("pain-panel"), affectPanel: $("affect-panel"),
  };

  const state = {
    task: "pain",
    labels: { pain: PAIN_LABELS.slice() },
    models: [], // students from /v1/models
    running: false, // the user pressed Start and has not pressed Stop
    camera: null, // MediaStream
    ws: null,
    opened: false, // the current socket reached the open state
    timer: null,
    reconnectTimer: null,
    attempts: 0,
    capturing: false,
    canvas: document.createElement("canvas"), // frame capture
    messageKind: null,
    serverSeen: false, // /readyz answered once
    lost: 0, // frames in flight when a connection broke, over every connection since Start
    reconnects: 0,
  };
  let stream = freshStream();

  function freshStream() {
    return {
      nextSeq: 0, inflight: new Map(), sent: 0, answered: 0, faces: 0, dropped: 0, skipped: 0, errors: 0,
      latencies: [], answerTimes: [], noFace: 0, timeline: [], trail: [], last: null,
    };
  }

  // -- messages ------------------------------------------------------------------------------------------------------

  function say(kind, text, level = "warn") {
    state.messageKind = kind;
    ui.message.textContent = text;
    ui.message.dataset.level = level;
    ui.message.dataset.kind = kind;
    ui.message.hidden = false;
  }

  function unsay(kind) {
    if (kind === undefined || state.messageKind === kind) {
      state.messageKind = null;
      ui.message.hidden = true;
      ui.message.textContent = "";
      delete ui.message.dataset.kind;
    }
  }

  function setStatus(text, level) {
    ui.status.textContent = text;
    ui.status.dataset.state = level;
  }

  function keyHeaders() {
    const key = ui.key.value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  // -- server discovery ----------------------------------------------------------------------------------------------

  async function checkServer() {
    let ready;
    try {
      const r = await fetch("/readyz", { cache: "no-store" });
      ready = await r.json();
    } catch (e) {
      setStatus("server unreachable", "bad");
      say("server", `Cannot reach the server at ${location.host}. Is it running?`,
          "error");
      return;
    }
    state.serverSeen = true;
    if (ready.status === "ready") {
      const providers = [...new Set(ready.models.map((m) => m.provider))].join(", ");
      if (!(state.ws && state.opened)) setStatus(`ready \u00b7 ${providers}`, "ok"); // else: "streaming"
      if (state.messageKind === "server") unsay("server");
    } else {
      setStatus("not ready", "warn");
      say("server", `The server is not ready: ${ready.reason || "starting"}.`, "warn");
    }
    await loadModels();
  }

  async function loadModels() {
    let r;
    try {
      r = await fetch("/v1/models", { headers: keyHeaders(), cache: "no-store" });
    } catch (e) {
      return;
    }
    if (r.status === 401) {
      ui.keyField.classList.add("needed");
      say("key", ui.key.value.trim() ? "The server refused this API key. Check it and try again."
                                      : "This server needs an API key: enter it above, then press Start camera.",
          "info");
      return;
    }
    if (!r.ok) return;
    ui.keyField.classList.remove("needed");
    if (state.messageKind === "key") unsay("key");
    const body = await r.json();
    state.models = body.models.filter((m) => m.role === "student");
    for (const m of state.models) {
      const labels = m.manifest && m.manifest.outputs && m.manifest.outputs.labels;
      if (m.task === "pain" && m.default && Array.isArray(labels) && labels.length === 5) state.labels.pain = labels;
    }
    fillModels();
  }

  function fillModels() {
    const chosen = ui.model.value;
    ui.model.replaceChildren(new Option("default", ""));
    for (const m of state.models.filter((x) => x.task === state.task)) {
      ui.model.add(new Option(`${m.name} ${m.version}${m.default ? " (default)" : ""}`, m.name));
    }
    ui.model.value = [...ui.model.options].some((o) => o.value === chosen) ? chosen : "";
    buildProbs();
  }

  // -- camera --------------------------------------------------------------------------------------------------------

  async function start() {
    unsay();
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("camera", "The camera is only available on a secure page: open the demo over https:// or at " +
                    "http://localhost.", "error");
      return;
    }
    ui.start.disabled = true;
    ui.note.textContent = "Waiting for the camera\u2026";
    try {
      state.camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
      });
    } catch (e) {
      ui.start.disabled = false;
      ui.note.textContent = "The camera is off.";
      say("camera", cameraError(e), "error");
      return;
    }
    for (const track of state.camera.getVideoTracks()) {
      track.addEventListener("ended", () => {
        stop();
        say("camera", "The camera stopped (unplugged, or taken by another application).", "error");
      });
    }
    ui.video.srcObject = state.camera;
    try {
      await ui.video.play();
    } catch (e) {
      // autoplay of a muted camera stream is allowed everywhere; the frames are read from the element anyway
    }
    ui.stage.classList.add("mirror");
    ui.note.textContent = "";
    state.running = true;
    state.lost = 0;
    ui.start.disabled = false;
    ui.start.textContent = "Stop";
    ui.start.classList.add("running");
    connect();
  }

  function cameraError(e) {
    switch (e && e.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Camera permission was denied. Allow the camera for this site (the camera icon in the address " +
               "bar), then press Start camera again.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No camera was found. Connect a webcam, then press Start camera again.";
      case "NotReadableError":
      case "AbortError":
        return "The camera could not start: another application may be using it.";
      default:
        return `The camera could not be opened (${e && e.name ? e.name + ": " : ""}${e && e.message}).`;
    }
  }

  function stop() {
    state.running = false;
    clearTimeout(state.reconnectTimer);
    disconnect(1000, "stopped by the user");
    if (state.camera) state.camera.getTracks().forEach((t) => t.stop());
    state.camera = null;
    ui.video.srcObject = null;
    clearOverlay();
    ui.note.textContent = "The camera is off. Press Start camera.";
    ui.start.textContent = "Start camera";
    ui.start.classList.remove("running");
    setStatus("stopped", "unknown");
    ui.calibrate.disabled = ui.reset.disabled = true;
    if (state.messageKind === "noface" || state.messageKind === "connection") unsay();
  }

  // -- the WebSocket -------------------------------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    // fps: the server samples the model's temporal window at the rate the model was trained on
    const params = new URLSearchParams({ task: state.task, fps: String(Number(ui.fps.value)) });
    if (ui.model.value) params.set("model", ui.model.value);
    const ws = new WebSocket(`${proto}//${location.host}/ws/stream?${params}`);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    state.opened = false;
    stream = freshStream();
    if (["calibrate", "frame", "noface"].includes(state.messageKind)) unsay(); // about the previous session
    render();
    setStatus("connecting\u2026", "warn");
    ws.onopen = () => {
      if (ws !== state.ws) return;
      state.opened = true;
      state.attempts = 0;
      const key = ui.key.value.trim();
      if (key) ws.send(JSON.stringify({ type: "auth", api_key: key })); // the first message: not in the URL
      setStatus(`streaming \u00b7 ${state.task}`, "ok");
      if (["connection", "server", "key"].includes(state.messageKind)) unsay();
      ui.calibrate.disabled = ui.reset.disabled = false;
      if (!state.serverSeen) checkServer(); // it was down when the page loaded: its models, its status
      startTimer();
    };
    ws.onmessage = (ev) => {
      if (ws !== state.ws || typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      handle(msg);
    };
    ws.onclose = (ev) => {
      if (ws !== state.ws) return;
      closed(ev.code, ev.reason);
    };
  }

  function disconnect(code, reason) {
    stopTimer();
    const ws = state.ws;
    state.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }

  function closed(code, reason) {
    const wasOpen = state.opened;
    state.ws = null;
    stopTimer();
    ui.calibrate.disabled = ui.reset.disabled = true;
    clearOverlay();
    if (!state.running) return;
    if (code === 1008) { // policy: the API key, an unknown task or model
      const keyProblem = /api key/i.test(reason);
      if (keyProblem) {
        ui.keyField.classList.add("needed");
        ui.key.focus();
      }
      stop();
      say("key", keyProblem ? (ui.key.value.trim() ? "The server refused this API key. Check it, then press " +
                                                      "Start camera again."
                                                    : "This server needs an API key: enter it above, then press " +
                                                      "Start camera again.")
                            : `The server refused the stream: ${reason}`, "error");
      setStatus("refused", "bad");
      return;
    }
    if (code === 1003 || code === 1009) {
      stop();
      say("connection", `The server closed the stream: ${reason || code}`, "error");
      setStatus("closed", "bad");
      return;
    }
    const delay = Math.min(2 ** state.attempts, 30);
    state.attempts += 1;
    if (wasOpen) { // the server's seq numbers end here: what was in flight will never be answered
      state.lost += stream.inflight.size;
      state.reconnects += 1;
      stream.inflight.clear();
      renderStats();
    }
    let why;
    if (code === 1013) why = `The server is full (${reason || "too many streams"}).`;
    else if (code === 1001) why = "The server is shutting down or restarting.";
    else if (wasOpen) why = `Lost the connection to the server (code ${code}${reason ? ": " + reason : ""}).`;
    else why = `Cannot reach the server at ${location.host}. Is it running?`;
    say("connection", `${why} Trying again in ${delay} s\u2026`, "error");
    setStatus(wasOpen ? "disconnected" : "server unreachable", "bad");
    state.reconnectTimer = setTimeout(() => { if (state.running) connect(); }, delay * 1000);
  }

  // -- sending frames ------------------------------------------------------------------------------------------------

  function startTimer() {
    stopTimer();
    state.timer = setInterval(tick, 1000 / Number(ui.fps.value));
  }

  function stopTimer() {
    clearInterval(state.timer);
    state.timer = null;
  }

  function tick() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || ui.video.readyState < 2 || !ui.video.videoWidth) return;
    const now = performance.now();
    for (const [seq, f] of stream.inflight) { // never stall on an answer that will not come
      if (now - f.t > ANSWER_TIMEOUT_MS) stream.inflight.delete(seq);
    }
    if (state.capturing || stream.inflight.size >= Number(ui.window.value) || ws.bufferedAmount > 1 << 20) {
      stream.skipped += 1;
      renderStats();
      return;
    }
    const v = ui.video;
    const w = Math.min(MAX_WIDTH, v.videoWidth);
    const h = Math.round(v.videoHeight * w / v.videoWidth);
    const c = state.canvas;
    c.width = w;
    c.height = h;
    c.getContext("2d").drawImage(v, 0, 0, w, h);
    state.capturing = true;
    c.toBlob((blob) => {
      if (!blob) {
        state.capturing = false;
        return;
      }
      blob.arrayBuffer().then((buf) => {
        state.capturing = false;
        if (ws !== state.ws || ws.readyState !== WebSocket.OPEN) return;
        const seq = stream.nextSeq++;
        stream.inflight.set(seq, { t: performance.now(), w, h });
        ws.send(buf);
        stream.sent += 1;
        renderStats();
      }, () => { state.capturing = false; });
    }, "image/jpeg", JPEG_QUALITY);
  }

  // -- answers -------------------------------------------------------------------------------------------------------

  function settle(seq) {
    const frame = stream.inflight.get(seq);
    for (const s of stream.inflight.keys()) if (s <= seq) stream.inflight.delete(s);
    return frame;
  }

  function handle(msg) {
    switch (msg.type) {
      case "result": return result(msg);
      case "error":
        if (typeof msg.seq === "number") {
          settle(msg.seq);
          stream.errors += 1;
          say("frame", `Frame ${msg.seq} was refused: ${msg.error.message}`, "warn");
        } else {
          say("calibrate", msg.error.message, "warn");
        }
        renderStats();
        return;
      case "calibrating":
        say("calibrate", `Calibrating: keep a neutral, relaxed face for ${msg.seconds} s\u2026`, "info");
        return;
      case "calibrated":
        say("calibrate", `Baseline set from ${msg.frames} frames. Readings now also show the change from it.`,
            "info");
        setTimeout(() => unsay("calibrate"), 6000);
        return;
      case "reset":
        stream.timeline = [];
        stream.trail = [];
        render();
        return;
      default: // pong, auth
    }
  }

  function result(msg) {
    const now = performance.now();
    const frame = settle(msg.seq);
    stream.answered += 1;
    stream.dropped = msg.dropped;
    stream.answerTimes.push(now);
    if (frame) {
      stream.latencies.push(now - frame.t);
      if (stream.latencies.length > 50) stream.latencies.shift();
    }
    stream.last = msg;
    if (state.messageKind === "frame") unsay("frame");
    if (msg.face_detected) {
      stream.faces += 1;
      stream.noFace = 0;
      if (state.messageKind === "noface") unsay("noface");
      drawFace(msg.face, frame);
    } else {
      stream.noFace += 1;
      clearOverlay();
      if (stream.noFace >= NO_FACE_AFTER) {
        say("noface", "No face found. Face the camera with your face well lit; the largest face is used.", "warn");
      }
    }
    const p = msg.smoothed || msg.prediction;
    if (state.task === "pain") {
      stream.timeline.push({ t: now, v: msg.face_detected && p ? p.expected_level : null });
    } else if (msg.face_detected && p) {
      stream.trail.push({ t: now, v: p.valence, a: p.arousal });
    }
    render();
  }

  // -- drawing -------------------------------------------------------------------------------------------------------

  function clearOverlay() {
    const o = ui.overlay;
    o.getContext("2d").clearRect(0, 0, o.width, o.height);
    delete o.dataset.box;
  }

  function drawFace(face, frame) {
    const o = ui.overlay;
    const w = frame ? frame.w : state.canvas.width;
    const h = frame ? frame.h : state.canvas.height;
    if (o.width !== w || o.height !== h) {
      o.width = w;
      o.height = h;
    }
    const g = o.getContext("2d");
    g.clearRect(0, 0, w, h);
    const [x, y, bw, bh] = face.box;
    g.lineWidth = Math.max(2, w / 200);
    g.strokeStyle = face.tracked ? "#4cc2ff" : "#3fb950";
    g.strokeRect(x, y, bw, bh);
    const corner = Math.min(bw, bh) / 5; // heavier corners
    g.lineWidth *= 2;
    g.beginPath();
    for (const [cx, cy, dx, dy] of [[x, y, 1, 1], [x + bw, y, -1, 1], [x, y + bh, 1, -1], [x + bw, y + bh, -1, -1]]) {
      g.moveTo(cx + dx * corner, cy);
      g.lineTo(cx, cy);
      g.lineTo(cx, cy + dy * corner);
    }
    g.stroke();
    o.dataset.box = face.box.map((v) => Math.round(v)).join(",");
  }

  function render() {
    renderStats();
    if (state.task === "pain") renderPain();
    else renderAffect();
  }

  function median(xs) {
    const s = xs.slice().sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)] : NaN;
  }

  function renderStats() {
    $("stat-sent").textContent = stream.sent;
    $("stat-answered").textContent = stream.answered;
    $("stat-faces").textContent = stream.faces;
    $("stat-dropped").textContent = stream.dropped;
    $("stat-skipped").textContent = stream.skipped;
    $("stat-lost").textContent = state.lost;
    const lat = stream.latencies;
    $("stat-latency").textContent = lat.length
      ? `${Math.round(lat[lat.length - 1])} / ${Math.round(median(lat))} ms` : "\u2013";
    const server = stream.last && stream.last.timings_ms && stream.last.timings_ms.total;
    $("stat-server").textContent = server ? `${server.toFixed(1)} ms` : "\u2013";
    const now = performance.now();
    stream.answerTimes = stream.answerTimes.filter((t) => now - t < 5000);
    $("stat-rate").textContent = stream.answerTimes.length ? `${(stream.answerTimes.length / 5).toFixed(1)} /s`
                                                           : "\u2013";
  }

  function buildProbs() {
    ui.probs.replaceChildren(...state.labels.pain.map((label, i) => {
      const li = document.createElement("li");
      li.dataset.level = i;
      li.innerHTML = `<span class="l"></span><span class="bar"><i></i></span><span class="p">\u2013</span>`;
      li.querySelector(".l").textContent = label;
      li.querySelector("i").style.background = PAIN_COLOURS[i];
      return li;
    }));
  }

  function signed(x, digits = 2) {
    return `${x >= 0 ? "+" : "\u2212"}${Math.abs(x).toFixed(digits)}`;
  }

  function renderPain() {
    const msg = stream.last;
    const p = msg && msg.face_detected ? msg.smoothed || msg.prediction : null;
    $("pain-level").textContent = p ? p.label || state.labels.pain[p.pain_level] : "\u2013";
    $("pain-expected").textContent = p ? p.expected_level.toFixed(2) : "\u2013";
    const rel = $("pain-relative");
    rel.hidden = !(p && msg.relative);
    if (p && msg.relative) rel.textContent = `${signed(msg.relative.expected_level)} vs baseline`;
    [...ui.probs.children].forEach((li, i) => {
      const prob = p ? p.probabilities[i] : null;
      li.querySelector("i").style.width = prob === null ? "0" : `${(100 * prob).toFixed(1)}%`;
      li.querySelector(".p").textContent = prob === null ? "\u2013" : `${(100 * prob).toFixed(1)}%`;
      li.classList.toggle("top", Boolean(p) && i === p.pain_level);
    });
    drawGauge(p ? p.expected_level : null);
    drawTimeline();
  }

  function drawGauge(level) {
    const c = ui.gauge;
    const g = c.getContext("2d");
    const cx = c.width / 2;
    const cy = c.height - 16;
    const r = Math.min(cx - 50, cy - 40); // room for the labels outside the arc
    g.clearRect(0, 0, c.width, c.height);
    g.lineCap = "butt";
    const n = state.labels.pain.length;
    for (let i = 0; i < n; i++) { // five coloured segments, left (no pain) to right (strongest)
      const a0 = Math.PI + (i / n) * Math.PI;
      const a1 = Math.PI + ((i + 1) / n) * Math.PI;
      g.beginPath();
      g.arc(cx, cy, r, a0 + 0.01, a1 - 0.01);
      g.lineWidth = 26;
      g.strokeStyle = PAIN_COLOURS[i];
      g.globalAlpha = level === null ? 0.35 : 0.9;
      g.stroke();
      g.globalAlpha = 1;
      const am = (a0 + a1) / 2;
      g.fillStyle = "#8b98a5";
      g.font = "12px system-ui, sans-serif";
      g.textAlign = "center";
      g.fillText(state.labels.pain[i], cx + (r + 30) * Math.cos(am), cy + (r + 30) * Math.sin(am) + 4);
    }
    if (level === null) return;
    const a = Math.PI + ((level + 0.5) / n) * Math.PI; // level k sits in the middle of segment k
    g.strokeStyle = "#e6edf3";
    g.lineWidth = 4;
    g.lineCap = "round";
    g.beginPath();
    g.moveTo(cx, cy);
    g.lineTo(cx + (r - 8) * Math.cos(a), cy + (r - 8) * Math.sin(a));
    g.stroke();
    g.beginPath();
    g.fillStyle = "#e6edf3";
    g.arc(cx, cy, 7, 0, 2 * Math.PI);
    g.fill();
  }

  function drawTimeline() {
    const c = ui.timeline;
    const g = c.getContext("2d");
    const left = 34;
    const w = c.width - left - 6;
    const h = c.height - 18;
    const top = 6;
    g.clearRect(0, 0, c.width, c.height);
    g.font = "10px system-ui, sans-serif";
    g.textAlign = "right";
    const n = state.labels.pain.length;
    const y = (v) => top + h - (v / (n - 1)) * h;
    for (let i = 0; i < n; i++) {
      g.strokeStyle = "#2a3542";
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(left, y(i));
      g.lineTo(left + w, y(i));
      g.stroke();
      g.fillStyle = PAIN_COLOURS[i];
      g.fillText(state.labels.pain[i], left - 4, y(i) + 3);
    }
    g.fillStyle = "#8b98a5";
    g.textAlign = "center";
    g.textAlign = "left";
    g.fillText(`\u2212${TIMELINE_S} s`, left, c.height - 2);
    g.textAlign = "right";
    g.fillText("now", left + w, c.height - 2);
    const now = performance.now();
    stream.timeline = stream.timeline.filter((p) => now - p.t <= TIMELINE_S * 1000);
    const x = (t) => left + w - ((now - t) / (TIMELINE_S * 1000)) * w;
    g.strokeStyle = "#4cc2ff";
    g.lineWidth = 2;
    g.beginPath();
    let pen = false;
    for (const p of stream.timeline) {
      if (p.v === null) { // no face: a gap
        pen = false;
        continue;
      }
      if (pen) g.lineTo(x(p.t), y(p.v));
      else g.moveTo(x(p.t), y(p.v));
      pen = true;
    }
    g.stroke();
    const last = stream.timeline[stream.timeline.length - 1];
    if (last && last.v !== null) { // the latest reading, as a dot
      g.fillStyle = "#4cc2ff";
      g.beginPath();
      g.arc(x(last.t), y(last.v), 3.5, 0, 2 * Math.PI);
      g.fill();
    }
  }

  function renderAffect() {
    const msg = stream.last;
    const p = msg && msg.face_detected ? msg.smoothed || msg.prediction : null;
    $("affect-valence").textContent = p ? signed(p.valence) : "\u2013";
    $("affect-arousal").textContent = p ? signed(p.arousal) : "\u2013";
    const rel = $("affect-relative");
    rel.hidden = !(p && msg.relative);
    if (p && msg.relative) {
      rel.textContent = `vs baseline: V ${signed(msg.relative.valence)}, A ${signed(msg.relative.arousal)}`;
    }
    drawCircumplex(p, p && msg.relative ? msg.relative : null);
  }

  function drawCircumplex(p, relative) {
    const c = ui.circumplex;
    const g = c.getContext("2d");
    const cx = c.width / 2;
    const cy = c.height / 2;
    const r = c.width / 2 - 30;
    const pos = (v, a) => [cx + v * r, cy - a * r];
    g.clearRect(0, 0, c.width, c.height);
    g.strokeStyle = "#2a3542";
    g.lineWidth = 1;
    g.beginPath();
    g.arc(cx, cy, r, 0, 2 * Math.PI);
    g.moveTo(cx - r - 8, cy);
    g.lineTo(cx + r + 8, cy);
    g.moveTo(cx, cy - r - 8);
    g.lineTo(cx, cy + r + 8);
    g.stroke();
    g.fillStyle = "#8b98a5";
    g.font = "12px system-ui, sans-serif";
    g.textAlign = "center";
    g.fillText("aroused", cx, 14);
    g.fillText("calm", cx, c.height - 4);
    g.textAlign = "left";
    g.fillText("pleasant", cx + r - 40, cy - 6);
    g.textAlign = "right";
    g.fillText("unpleasant", cx - r + 52, cy - 6);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#56636f";
    g.textAlign = "center";
    for (const [v, a, word] of [[0.55, 0.62, "excited"], [-0.55, 0.62, "tense"], [-0.55, -0.62, "sad"],
                                [0.55, -0.62, "relaxed"]]) {
      const [x, y] = pos(v, a);
      g.fillText(word, x, y);
    }
    const now = performance.now();
    stream.trail = stream.trail.filter((q) => now - q.t <= TRAIL_S * 1000);
    for (let i = 1; i < stream.trail.length; i++) { // older segments fainter
      const a = stream.trail[i - 1];
      const b = stream.trail[i];
      g.strokeStyle = `rgba(76, 194, 255, ${(0.15 + 0.85 * (1 - (now - b.t) / (TRAIL_S * 1000))).toFixed(2)})`;
      g.lineWidth = 2;
      g.beginPath();
      g.moveTo(...pos(a.v, a.a));
      g.lineTo(...pos(b.v, b.a));
      g.stroke();
    }
    if (!p) return;
    if (relative) { // the calibrated baseline, as a ring
      const [bx, by] = pos(p.valence - relative.valence, p.arousal - relative.arousal);
      g.strokeStyle = "#d29922";
      g.lineWidth = 2;
      g.beginPath();
      g.arc(bx, by, 7, 0, 2 * Math.PI);
      g.stroke();
    }
    const [x, y] = pos(p.valence, p.arousal);
    g.fillStyle = "#4cc2ff";
    g.shadowColor = "#4cc2ff";
    g.shadowBlur = 12;
    g.beginPath();
    g.arc(x, y, 8, 0, 2 * Math.PI);
    g.fill();
    g.shadowBlur = 0;
    c.dataset.point = `${p.valence.toFixed(3)},${p.arousal.toFixed(3)}`;
  }

  // -- controls ------------------------------------------------------------------------------------------------------

  function setTask(task) {
    state.task = task;
    ui.painPanel.hidden = task !== "pain";
    ui.affectPanel.hidden = task !== "affect";
    fillModels();
    stream = freshStream();
    render();
    if (state.running) {
      disconnect(1000, "task changed");
      connect();
    }
  }

  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (state.running) stop();
    else start();
  });
  for (const radio of ui.form.elements.task) radio.addEventListener("change", (ev) => setTask(ev.target.value));
  ui.model.addEventListener("change", () => {
    if (state.running) {
      disconnect(1000, "model changed");
      connect();
    }
  });
  ui.fps.addEventListener("change", () => {
    if (state.timer) startTimer();
    if (state.running) {  // the stream's window stride follows the frame rate
      disconnect(1000, "frame rate changed");
      connect();
    }
  });
  ui.key.addEventListener("change", () => loadModels());
  ui.calibrate.addEventListener("click", () => {
    if (state.ws && state.opened) state.ws.send(JSON.stringify({ type: "calibrate", seconds: CALIBRATION_S }));
  });
  ui.reset.addEventListener("click", () => {
    if (state.ws && state.opened) state.ws.send(JSON.stringify({ type: "reset", baseline: true }));
  });
  setInterval(() => { if (state.running) render(); }, 1000); // the timeline scrolls even without answers
  window.addEventListener("pagehide", () => disconnect(1000, "page closed")); // scripts may only send 1000

  buildProbs();
  const checked = ui.form.querySelector("input[name=task]:checked");
  setTask(checked ? checked.value : "pain");
  checkServer();
})();
