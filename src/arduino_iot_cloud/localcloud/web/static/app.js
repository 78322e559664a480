// The local cloud's dashboard page.
// Live values come over one WebSocket, pushed by the server (a snapshot, then changes);
// writes and commands are POSTs carrying the token.  Every value a device sends is put
// into the page as text (textContent, input values, SVG coordinates), never as markup.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const CHART_POINTS = 120;
  const PLAYBACK = ["fast forward", "next", "pause", "play", "previous", "rewind", "start over", "stop"];
  const page = {token: null, retry: 500, devices: new Map(), lastSeenTimer: null};

  // -- small DOM helpers ---------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function toast(message, bad) {
    const box = document.getElementById("toast");
    box.textContent = message;
    box.className = bad ? "bad" : "good";
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, bad ? 6000 : 2500);
  }

  function ago(t) {
    if (!t) return "never";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 2) return "just now";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return new Date(t * 1000).toLocaleString();
  }

  function short(id) { return id && id.length > 13 ? id.slice(0, 8) + "…" + id.slice(-4) : (id || "—"); }

  function fmtNumber(v) {
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? "on" : "off";
    if (typeof v === "number") return fmtNumber(v);
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + " " + fmtValue(x)).join(", ");
    return String(v);
  }

  // -- colours: the cloud's hue 0-360, saturation and brightness 0-100 <-> #rrggbb -----------

  function hsbToHex(h, s, b) {
    s /= 100; b /= 100;
    const f = (n) => { const k = (n + h / 60) % 6; return b - b * s * Math.max(0, Math.min(k, 4 - k, 1)); };
    return "#" + [f(5), f(3), f(1)].map((x) => Math.round(x * 255).toString(16).padStart(2, "0")).join("");
  }

  function hexToHsb(hex) {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
    const max = Math.max(r, g, b), d = max - Math.min(r, g, b);
    let h = 0;
    if (d) h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
    const round1 = (x) => Math.round(x * 10) / 10;
    return {hue: round1((h * 60 + 360) % 360), sat: round1(max ? d / max * 100 : 0), bri: round1(max * 100)};
  }

  // -- times shown in UTC (schedules and timezone ends are unix seconds) ----------------------

  function toLocalInput(t) { return t ? new Date(t * 1000).toISOString().slice(0, 16) : ""; }
  function fromLocalInput(s) { return s ? Math.round(Date.parse(s + ":00Z") / 1000) : 0; }

  // -- talking to the server -----------------------------------------------------------------

  // POST with the token: a JSON body, or (file) a File sent as it is.
  async function post(path, body, file) {
    let response;
    try {
      response = await fetch(path, {method: "POST", body: file || JSON.stringify(body || {}),
        headers: {"Authorization": "Bearer " + page.token,
                  "Content-Type": file ? "application/octet-stream" : "application/json"}});
    } catch (err) {
      toast("the dashboard server does not answer", true);
      return null;
    }
    const data = await response.json().catch(() => ({error: "HTTP " + response.status}));
    if (!response.ok) {
      toast(data.error || "HTTP " + response.status, true);
      if (response.status === 401) showLogin("the token was refused");
      return null;
    }
    return data;
  }

  function devicePath(id, what) { return "/api/devices/" + encodeURIComponent(id) + "/" + what; }

  function write(deviceId, name, value) {
    return post(devicePath(deviceId, "properties/" + encodeURIComponent(name)), {value: value});
  }

  function setLink(up) {
    const pill = document.getElementById("link");
    pill.textContent = up ? "live" : "reconnecting";
    pill.className = "pill " + (up ? "on" : "off");
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/live");
    ws.onopen = () => ws.send(JSON.stringify({token: page.token}));
    ws.onmessage = (event) => handle(JSON.parse(event.data));
    ws.onclose = (event) => {
      setLink(false);
      if (event.code === 4401) { showLogin("the token was refused"); return; }
      setTimeout(connect, page.retry);  // the server went away: reconnect, backing off
      page.retry = Math.min(page.retry * 2, 5000);
    };
  }

  function handle(msg) {
    if (msg.type === "snapshot") {
      page.retry = 500;
      setLink(true);
      for (const id of [...page.devices.keys()]) removeDevice(id);
      for (const d of msg.devices) upsertDevice(d, d.history);
      document.querySelector("#refused tbody").replaceChildren();
      for (const r of msg.refused) addRefused(r);
      document.getElementById("no-refused").hidden = msg.refused.length > 0;
      document.getElementById("refused").hidden = msg.refused.length === 0;
    } else if (msg.type === "device") {
      upsertDevice(msg.device, null);
    } else if (msg.type === "points") {
      const dev = page.devices.get(msg.device_id);
      const tile = dev && dev.tiles.get(msg.name);
      if (tile && tile.chart) tile.chart.add(msg.points);
    } else if (msg.type === "ota") {
      const dev = page.devices.get(msg.device_id);
      if (dev) dev.card.otaProgress(msg);
    } else if (msg.type === "refused") {
      addRefused(msg.refusal);
      document.getElementById("no-refused").hidden = true;
      document.getElementById("refused").hidden = false;
    }
  }

  // -- devices -------------------------------------------------------------------------------

  function statusPill(connected) {
    return el("span", {class: "pill " + (connected ? "on" : "off"), text: connected ? "online" : "offline"});
  }

  function upsertDevice(d, history) {
    let dev = page.devices.get(d.device_id);
    if (!dev) {
      dev = {tiles: new Map(), row: buildRow(d.device_id), card: buildCard(d), thing: d.thing_id};
      page.devices.set(d.device_id, dev);
      document.querySelector("#devices tbody").append(dev.row);
      document.getElementById("cards").append(dev.card.root);
    }
    if (dev.thing !== d.thing_id) {  // another thing: other properties, other history
      for (const tile of dev.tiles.values()) tile.root.remove();
      dev.tiles.clear();
      dev.thing = d.thing_id;
    }
    dev.data = d;
    dev.row.update(d);
    dev.card.update(d);
    const names = new Set();
    for (const p of d.properties) {
      names.add(p.name);
      let tile = dev.tiles.get(p.name);
      if (tile && tile.widget !== p.widget) { tile.root.remove(); tile = null; }
      if (!tile) {
        tile = buildTile(d.device_id, p, history ? history[p.name] : null);
        dev.tiles.set(p.name, tile);
        insertSorted(dev.card.props, tile.root, p.name);
      }
      tile.update(p.value);
    }
    for (const [name, tile] of dev.tiles) {
      if (!names.has(name)) { tile.root.remove(); dev.tiles.delete(name); }
    }
    dev.card.empty.hidden = d.properties.length > 0;
    document.getElementById("no-devices").hidden = page.devices.size > 0;
  }

  // A row of the devices table: its cells are made once and updated in place.
  function buildRow(id) {
    const cells = {};
    const root = el("tr", {"data-device": id});
    for (const name of ["device", "auth", "status", "thing", "library", "seen", "sha256"]) {
      cells[name] = el("td", {class: name === "seen" ? "last-seen" : ""});
      root.append(cells[name]);
    }
    cells.device.append(el("code", {text: short(id), title: id}));
    const code = (text) => el("code", {text: short(text), title: text});
    const muted = (text) => el("span", {class: "muted", text});
    root.update = (d) => {
      cells.auth.textContent = d.auth;
      cells.status.replaceChildren(statusPill(d.connected));
      cells.thing.replaceChildren(d.thing_id ? code(d.thing_id) : muted("detached"));
      cells.library.textContent = d.library_version || "—";
      cells.seen.dataset.time = d.last_seen || "";
      cells.seen.textContent = ago(d.last_seen);
      cells.seen.title = d.last_seen ? new Date(d.last_seen * 1000).toLocaleString() : "";
      cells.sha256.replaceChildren(d.sha256 ? code(d.sha256) : muted("not reported"));
    };
    return root;
  }

  function insertSorted(parent, node, name) {
    for (const other of parent.children) {
      if (other.dataset.name > name) { parent.insertBefore(node, other); return; }
    }
    parent.append(node);
  }

  function removeDevice(id) {
    const dev = page.devices.get(id);
    dev.row.remove();
    dev.card.root.remove();
    page.devices.delete(id);
  }

  function buildCard(d) {
    const id = d.device_id;
    const title = el("h2", {}, el("span", {class: "muted", text: "device "}), el("code", {text: id}));
    const status = el("span");
    const thing = el("span", {class: "thing"});
    const props = el("div", {class: "props"});
    const empty = el("p", {class: "muted", text: "No properties yet: they appear when the device reports them."});
    const reassignInput = el("input", {type: "text", placeholder: "thing id (empty: a new thing)", size: 24,
                                       "aria-label": "new thing id"});
    const offset = el("input", {type: "number", step: "0.25", min: "-24", max: "24", value: "0", size: 5,
                                "aria-label": "UTC offset in hours"});
    const until = el("input", {type: "datetime-local", "aria-label": "offset valid until (UTC)",
                               value: toLocalInput(Date.now() / 1000 + 365 * 86400)});
    const otaFile = el("input", {type: "file", accept: ".ota", class: "ota-file", "aria-label": "OTA file"});
    const otaState = el("span", {class: "ota-state muted", text: ""});
    const commands = el("div", {class: "commands"},
      el("button", {class: "detach", text: "Detach", onclick: async () => {
        if (await post(devicePath(id, "detach"))) toast("detached " + short(id));
      }}),
      el("span", {class: "group"}, reassignInput, el("button", {class: "reassign", text: "Reassign", onclick: async () => {
        const res = await post(devicePath(id, "reassign"), {thing_id: reassignInput.value.trim() || null});
        if (res) { toast("now on thing " + res.thing_id); reassignInput.value = ""; }
      }})),
      el("span", {class: "group"}, el("label", {text: "UTC offset (h) "}), offset, el("label", {text: " until "}), until,
        el("button", {class: "timezone", text: "Send timezone", onclick: async () => {
          const body = {offset: Math.round(Number(offset.value) * 3600), until: fromLocalInput(until.value)};
          if (await post(devicePath(id, "timezone"), body)) toast("timezone sent");
        }})),
      el("span", {class: "group ota-slot"}, otaFile,
        el("button", {class: "ota", text: "Send OTA file…", onclick: async () => {
          const file = otaFile.files[0];
          if (!file) { toast("choose an OTA file first (python -m arduino_iot_cloud.ota pack APP -o FILE)", true); return; }
          otaLog.replaceChildren();
          const res = await post(devicePath(id, "ota"), null, file);
          if (res) toast("OTA sent: " + file.name);
        }}), otaState));
    const otaLog = el("ol", {class: "ota-log"});
    const root = el("section", {class: "card", "data-device": id},
      el("div", {class: "card-head"}, title, status, thing), commands, otaLog, props, empty);
    return {root, props, empty, otaProgress(msg) {
      // Each OTA report as it arrives: the last one beside the button, all of them in a list.
      otaState.textContent = "OTA: " + msg.text;
      otaState.classList.toggle("bad", msg.state === "Fail");
      otaLog.append(el("li", {"data-state": msg.state, text: new Date().toLocaleTimeString() + " " + msg.text}));
      while (otaLog.children.length > 20) otaLog.firstChild.remove();
    }, update(dd) {
      status.replaceChildren(statusPill(dd.connected));
      thing.replaceChildren(el("span", {class: "muted", text: "thing "}),
        dd.thing_id ? el("code", {text: dd.thing_id}) : el("span", {class: "muted", text: "none (detached)"}));
    }};
  }

  function addRefused(r) {
    const tbody = document.querySelector("#refused tbody");
    tbody.prepend(el("tr", {},
      el("td", {text: new Date(r.time * 1000).toLocaleTimeString()}), el("td", {text: r.reason || "—"}),
      el("td", {text: (r.listener || "port") + (r.port ? " (" + r.port + ")" : "")}),
      el("td", {text: r.peer || "—"}), el("td", {text: r.tls_error || "—"})));
    while (tbody.children.length > 50) tbody.lastChild.remove();
  }

  // -- property tiles: a live value, a widget by type, a chart for numbers --------------------

  function buildTile(deviceId, p, history) {
    const value = el("div", {class: "value"});
    const make = WIDGETS[p.widget] || WIDGETS.none;
    const widget = make((v) => write(deviceId, p.name, v));
    const root = el("div", {class: "prop w-" + p.widget, "data-name": p.name, "data-widget": p.widget},
      el("div", {class: "prop-head"}, el("span", {class: "name", text: p.name}),
         el("span", {class: "kind", text: p.widget.replace("_", " ")})),
      value, widget.root);
    const tile = {root, widget: p.widget, chart: null, update(v) {
      value.textContent = p.widget === "sealed" ? "sealed value" : fmtValue(v);
      value.title = typeof v === "string" ? v : "";
      if (!root.contains(document.activeElement)) widget.update(v);  // never undo what the user types
    }};
    if (p.widget === "number") {
      tile.chart = chart(history || []);
      root.append(tile.chart.root);
    }
    return tile;
  }

  function button(text, onclick) { return el("button", {text, onclick}); }

  function switchInput(onchange) {
    const input = el("input", {type: "checkbox", role: "switch", onchange: () => onchange(input.checked)});
    return {input, root: el("label", {class: "switch"}, input, el("span", {class: "knob"}))};
  }

  function numberField(label, props, onchange) {
    const input = el("input", Object.assign({type: "number", step: "any"}, props, {
      onchange: () => { if (input.value !== "") onchange(Number(input.value)); }}));
    return {input, root: el("label", {class: "field"}, el("span", {text: label}), input)};
  }

  const WIDGETS = {
    none() {
      return {root: el("div", {class: "muted", text: "no value yet"}), update() {}};
    },
    switch(send) {
      const sw = switchInput(send);
      return {root: sw.root, update(v) { sw.input.checked = !!v; }};
    },
    number(send) {
      const range = el("input", {type: "range", step: "any", "aria-label": "slider",
                                 onchange: () => send(Number(range.value))});
      const num = el("input", {type: "number", step: "any", "aria-label": "value",
                               onchange: () => { if (num.value !== "") send(Number(num.value)); }});
      return {root: el("div", {class: "row"}, range, num), update(v) {
        if (typeof v !== "number") return;
        const span = Math.max(10, Math.abs(v) * 2);  // no declared range: one around the value
        range.min = String(Math.min(0, Math.floor(v - span / 2)));
        range.max = String(Math.max(100, Math.ceil(v + span / 2)));
        range.step = num.step = Number.isInteger(v) ? "1" : "any";  // an int property takes whole numbers
        range.value = String(v);
        num.value = String(v);
      }};
    },
    text(send) {
      const input = el("input", {type: "text", "aria-label": "text",
                                 onkeydown: (e) => { if (e.key === "Enter") send(input.value); }});
      return {root: el("div", {class: "row"}, input, button("Set", () => send(input.value))),
              update(v) { input.value = v === null || v === undefined ? "" : String(v); }};
    },
    sealed() {
      const opaque = el("code", {class: "opaque"});
      return {root: el("div", {class: "sealed-box", title: "sealed (COSE): the cloud cannot read or change it"},
                       el("span", {class: "lock", text: "🔒"}), opaque),
              update(v) { opaque.textContent = String(v); }};
    },
    color(send) {
      const picker = el("input", {type: "color", "aria-label": "colour",
                                  onchange: () => send(hexToHsb(picker.value))});
      return {root: el("div", {class: "row"}, picker), update(v) {
        if (v) picker.value = hsbToHex(v.hue || 0, v.sat || 0, v.bri || 0);
      }};
    },
    colored_light(send) {
      const sw = switchInput((on) => send({swi: on}));
      const picker = el("input", {type: "color", "aria-label": "colour",
                                  onchange: () => send(hexToHsb(picker.value))});
      return {root: el("div", {class: "row"}, sw.root, picker), update(v) {
        if (!v) return;
        sw.input.checked = !!v.swi;
        picker.value = hsbToHex(v.hue || 0, v.sat || 0, v.bri || 0);
      }};
    },
    dimmed_light(send) {
      const sw = switchInput((on) => send({swi: on}));
      const bri = el("input", {type: "range", min: "0", max: "100", step: "any", "aria-label": "brightness",
                               onchange: () => send({bri: Number(bri.value)})});
      return {root: el("div", {class: "row"}, sw.root, bri), update(v) {
        if (!v) return;
        sw.input.checked = !!v.swi;
        bri.value = String(v.bri || 0);
      }};
    },
    location(send) {
      const lat = numberField("lat", {min: "-90", max: "90"}, () => {});
      const lon = numberField("lon", {min: "-180", max: "180"}, () => {});
      const set = button("Set", () => send({lat: Number(lat.input.value), lon: Number(lon.input.value)}));
      return {root: el("div", {class: "row"}, lat.root, lon.root, set), update(v) {
        if (!v) return;
        lat.input.value = String(v.lat);
        lon.input.value = String(v.lon);
      }};
    },
    television(send) {
      const sw = switchInput((on) => send({swi: on}));
      const mute = el("input", {type: "checkbox", onchange: () => send({mut: mute.checked})});
      const vol = el("input", {type: "range", min: "0", max: "100", step: "1", "aria-label": "volume",
                               onchange: () => send({vol: Number(vol.value)})});
      const pbc = el("select", {"aria-label": "playback", onchange: () => send({pbc: Number(pbc.value)})},
        ...PLAYBACK.map((name, i) => el("option", {value: String(i), text: name})),
        el("option", {value: "255", text: "none"}));
      const cha = numberField("channel", {step: "1", min: "0"}, (n) => send({cha: Math.round(n)}));
      const inp = numberField("input", {step: "1", min: "0"}, (n) => send({inp: Math.round(n)}));
      return {root: el("div", {class: "grid"}, sw.root, el("label", {class: "field"}, mute, el("span", {text: "mute"})),
                       el("label", {class: "field"}, el("span", {text: "volume"}), vol), pbc, cha.root, inp.root),
              update(v) {
                if (!v) return;
                sw.input.checked = !!v.swi; mute.checked = !!v.mut; vol.value = String(v.vol || 0);
                pbc.value = String(v.pbc); cha.input.value = String(v.cha); inp.input.value = String(v.inp);
              }};
    },
    schedule(send) {
      const frm = el("input", {type: "datetime-local", "aria-label": "from (UTC)"});
      const to = el("input", {type: "datetime-local", "aria-label": "to (UTC)"});
      const len = numberField("length (s)", {step: "1", min: "0"}, () => {});
      const msk = numberField("mask", {step: "1", min: "0"}, () => {});
      const set = button("Set", () => send({frm: fromLocalInput(frm.value), to: fromLocalInput(to.value),
                                            len: Math.round(Number(len.input.value)), msk: Math.round(Number(msk.input.value))}));
      return {root: el("div", {class: "grid"}, el("label", {class: "field"}, el("span", {text: "from (UTC)"}), frm),
                       el("label", {class: "field"}, el("span", {text: "to (UTC)"}), to), len.root, msk.root, set),
              update(v) {
                if (!v) return;
                frm.value = toLocalInput(v.frm); to.value = toLocalInput(v.to);
                len.input.value = String(v.len); msk.input.value = String(v.msk);
              }};
    },
    fields(send) {
      const box = el("div", {class: "grid"});
      let inputs = {};
      const set = button("Set", () => {
        const out = {};
        for (const [k, input] of Object.entries(inputs)) {
          out[k] = input.type === "checkbox" ? input.checked : input.type === "number" ? Number(input.value) : input.value;
        }
        send(out);
      });
      return {root: el("div", {}, box, set), update(v) {
        if (!v) return;
        inputs = {};
        box.replaceChildren(...Object.entries(v).map(([k, x]) => {
          const type = typeof x === "boolean" ? "checkbox" : typeof x === "number" ? "number" : "text";
          const input = el("input", {type, step: "any"});
          if (type === "checkbox") input.checked = x; else input.value = String(x);
          inputs[k] = input;
          return el("label", {class: "field"}, el("span", {text: k}), input);
        }));
      }};
    },
  };

  // -- charts: recent reports of a numeric property, drawn as SVG -----------------------------

  function chart(initial) {
    const W = 300, H = 70;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "chart");
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "area");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "line");
    svg.append(area, line);
    const hi = el("span"), lo = el("span"), span = el("span");
    const root = el("div", {class: "chart-box"}, svg, el("div", {class: "chart-legend"}, lo, span, hi));
    let points = [];

    function draw() {
      svg.dataset.points = String(points.length);
      if (!points.length) { line.setAttribute("points", ""); area.setAttribute("points", ""); return; }
      const t0 = points[0][0], t1 = points[points.length - 1][0];
      let min = Math.min(...points.map((p) => p[1])), max = Math.max(...points.map((p) => p[1]));
      if (max === min) { max += 1; min -= 1; }
      const pad = (max - min) * 0.1;
      const x = (t) => (t1 === t0 ? W : (t - t0) / (t1 - t0) * W).toFixed(1);
      const y = (v) => (H - (v - min + pad) / (max - min + 2 * pad) * H).toFixed(1);
      const coords = points.map((p) => x(p[0]) + "," + y(p[1]));
      line.setAttribute("points", coords.join(" "));
      area.setAttribute("points", x(t0) + "," + H + " " + coords.join(" ") + " " + x(t1) + "," + H);
      lo.textContent = "min " + fmtNumber(Math.min(...points.map((p) => p[1])));
      hi.textContent = "max " + fmtNumber(Math.max(...points.map((p) => p[1])));
      span.textContent = points.length + " reports" + (t1 > t0 ? " in " + Math.round(t1 - t0) + " s" : "");
    }

    function add(more) {
      points = points.concat(more).slice(-CHART_POINTS);
      draw();
    }
    add(initial);
    return {root, add, get count() { return points.length; }};
  }

  // -- start ----------------------------------------------------------------------------------

  function showLogin(why) {
    document.getElementById("login").hidden = false;
    setLink(false);
    document.getElementById("link").textContent = why || "token needed";
  }

  function start() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {  // keep the token out of the address bar and the history
      sessionStorage.setItem("dashboard-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);
    }
    page.token = sessionStorage.getItem("dashboard-token");
    document.getElementById("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem("dashboard-token", document.getElementById("token").value.trim());
      location.reload();
    });
    if (!page.token) { showLogin(); return; }
    connect();
    setInterval(() => {  // refresh the "last seen" texts (display only; no request)
      for (const cell of document.querySelectorAll("td.last-seen")) cell.textContent = ago(Number(cell.dataset.time));
    }, 1000);
  }

  start();
}());
