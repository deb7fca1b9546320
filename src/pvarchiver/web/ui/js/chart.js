/*
 * Quick chart: several PVs over a chosen range, as the Phoebus Data Browser draws them: one
 * trace per PV in its own colour, a legend, y axes shared per unit (or one per PV), PVs added
 * and removed on the page and kept in the URL (chart.html?pv=A&pv=B).
 *
 * History comes from /retrieval/data/getData.json, one request per PV.  Ranges longer than an
 * hour are asked for as mean_<bin>(PV), with the bin chosen to give about MAX_POINTS points,
 * so a week of a 10 Hz PV is a few thousand points rather than six million; "every sample"
 * overrides that.  Values are drawn as steps: an archived value holds until the next sample.
 *
 * For a range ending now ("Last ..."), the chart then keeps extending with live values from
 * the PVWS websocket (js/pvws.js): the window slides with the clock, each trace holds its
 * last value up to now, and the socket is closed as soon as the range no longer ends now.
 * The server throttles the updates (1 s per PV by default); the page redraws at most
 * every REDRAW_MS whatever the rate.
 */
"use strict";

(() => {
  const MAX_POINTS = 3000;
  const RAW_UP_TO_SECONDS = 3600;
  const REDRAW_MS = 500;
  const COLORS = ["#2f6fb3", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085", "#b8860b",
    "#e84393", "#34495e", "#7f8c8d"];

  const form = document.getElementById("chartForm");
  const pvInput = document.getElementById("chartPV");
  const addButton = document.getElementById("chartAdd");
  const range = document.getElementById("chartRange");
  const fromInput = document.getElementById("chartFrom");
  const toInput = document.getElementById("chartTo");
  const axesMode = document.getElementById("chartAxes");
  const raw = document.getElementById("chartRaw");
  const list = document.getElementById("chartPVs");
  const info = document.getElementById("chartInfo");
  const liveInfo = document.getElementById("chartLive");
  const box = document.getElementById("chart");

  let names = [];        // the chart's PVs, in the order added
  let series = [];       // per PV: {name, color, xs, ys, unit, waveform, fetched, live, bin}
  let view = null;       // {from, to, rel (seconds, or null for a fixed range), bin}
  let plot = null;
  let live = null;       // PVWS.Client while the range ends now
  let ticker = null;
  let zoomed = false;    // the user dragged a zoom: live values go on, the view stays
  let gen = 0;

  AA.nav("chart.html");

  // datetime-local speaks local wall time without a zone; Date does the conversion
  function toLocalInput(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function chosenRange() {
    if (range.value !== "custom") {
      const to = new Date();
      return [new Date(to.getTime() - Number(range.value) * 1000), to];
    }
    const from = new Date(fromInput.value);
    const to = new Date(toInput.value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) throw new Error("Please give both From and To.");
    if (to <= from) throw new Error("To must be after From.");
    return [from, to];
  }

  /* One sample's value as a number, or null (gaps, strings; element 0 of a waveform). */
  function numeric(val) {
    if (Array.isArray(val)) return numeric(val[0]);
    if (typeof val === "number") return Number.isFinite(val) ? val : null;
    return null;
  }

  function formatValue(y) {
    if (y === null || y === undefined) return "no value";
    return Math.abs(y) >= 1e6 || (y !== 0 && Math.abs(y) < 1e-3) ? y.toExponential(4) : String(+y.toFixed(6));
  }

  /* Names typed in the box: separated by white space (names may contain commas). */
  function typedNames() {
    const typed = pvInput.value.split(/\s+/).filter(Boolean);
    const bad = typed.filter((n) => !AA.validName(n));
    if (bad.length) throw new Error(`Not a valid PV name: ${bad.join(", ")}`);
    return typed;
  }

  function addNames(more) {
    for (const n of more) if (!names.includes(n)) names.push(n);
    pvInput.value = "";
  }

  function colorOf(name) {
    return COLORS[names.indexOf(name) % COLORS.length];
  }

  // ------------------------------------------------------------------ the PV list

  function drawList() {
    AA.clear(list);
    for (const name of names) {
      const s = series.find((x) => x.name === name);
      const swatch = AA.el("span", { class: "swatch" });
      swatch.style.background = colorOf(name);
      const remove = AA.el("button", { type: "button", class: "remove", title: `Remove ${name}` }, "\u00d7");
      remove.addEventListener("click", () => {
        names = names.filter((n) => n !== name);
        plotNow();
      });
      const item = AA.el("li", { "data-pv": name }, [
        swatch, AA.pvDetailsLink(name), AA.el("span", { class: "latest" }), remove,
      ]);
      if (s) {
        item.dataset.samples = String(s.fetched);
        item.dataset.live = String(s.live);
        if (s.xs.length) item.dataset.last = String(s.xs[s.xs.length - 1]);
      }
      list.appendChild(item);
    }
  }

  function itemOf(name) {
    return list.querySelector(`li[data-pv="${CSS.escape(name)}"]`);
  }

  // ------------------------------------------------------------------ history

  async function fetchOne(name, from, to, bin) {
    const pvParam = bin ? `mean_${bin}(${name})` : name;
    const result = await AA.retrieval("data/getData.json", {
      pv: pvParam, from: from.toISOString(), to: to.toISOString(),
    });
    const stream = AA.asList(result)[0] || { meta: {}, data: [] };
    const samples = stream.data || [];
    const meta = stream.meta || {};
    const s = { name, xs: [], ys: [], unit: meta.EGU || "", waveform: false, fetched: samples.length, live: 0 };
    let numbers = 0;
    for (const smp of samples) {
      s.xs.push(smp.secs + (smp.nanos || 0) / 1e9);
      const y = numeric(smp.val);
      s.ys.push(y);
      if (y !== null) numbers += 1;
      if (Array.isArray(smp.val)) s.waveform = true;
    }
    if (samples.length && !numbers) s.error = `${name} has no numeric values to draw (a string PV?).`;
    return s;
  }

  // ------------------------------------------------------------------ drawing

  /*
   * uPlot wants one x array for all traces: merge the traces' times; a trace without a sample
   * at some x gets `undefined`, which uPlot draws across, while `null` (a disconnection, a
   * non-numeric value) stays a gap.  While live, each trace holds its last value up to now.
   */
  function aligned(now) {
    const n = series.length;
    const at = new Array(n).fill(0);
    const xs = [];
    const ys = series.map(() => []);
    for (;;) {
      let t = Infinity;
      for (let i = 0; i < n; i++) if (at[i] < series[i].xs.length && series[i].xs[at[i]] < t) t = series[i].xs[at[i]];
      if (t === Infinity) break;
      xs.push(t);
      for (let i = 0; i < n; i++) {
        const s = series[i];
        if (at[i] < s.xs.length && s.xs[at[i]] === t) {
          while (at[i] + 1 < s.xs.length && s.xs[at[i] + 1] === t) at[i] += 1;
          ys[i].push(s.ys[at[i]]);
          at[i] += 1;
        } else {
          ys[i].push(undefined);
        }
      }
    }
    if (now !== undefined && (!xs.length || xs[xs.length - 1] < now)) {
      xs.push(now);
      series.forEach((s, i) => ys[i].push(s.ys.length ? s.ys[s.ys.length - 1] : undefined));
    }
    return [xs, ...ys];
  }

  function scaleKeys() {
    const keys = series.map((s, i) => (axesMode.value === "pv" ? `y${i}` : `u:${s.unit}`));
    return { keys, order: [...new Set(keys)] };
  }

  function options() {
    const { keys, order } = scaleKeys();
    const scales = {
      x: { time: true, range: (u, min, max) => (view && !zoomed ? [view.from, view.to] : [min, max]) },
    };
    const axes = [{}];
    order.forEach((key, j) => {
      scales[key] = {};
      const on = series.filter((s, i) => keys[i] === key);
      const label = axesMode.value === "unit" && on[0].unit ? on[0].unit : on.map((s) => s.name).join(", ");
      const axis = { scale: key, side: j % 2 ? 1 : 3, label, grid: { show: j === 0 } };
      if (on.length === 1) axis.stroke = colorOf(on[0].name);
      axes.push(axis);
    });
    const stepped = uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined;
    return {
      width: Math.max(400, Math.min(1300, box.clientWidth || 1000)),
      height: 420,
      scales,
      axes,
      series: [{}, ...series.map((s, i) => ({
        label: s.name + (s.waveform ? " [element 0]" : "") + (s.unit ? ` (${s.unit})` : ""),
        scale: keys[i],
        stroke: colorOf(s.name),
        width: 1.5,
        spanGaps: false,
        paths: stepped,
        points: { show: s.xs.length < 200 },
      }))],
      hooks: {
        // a drag-zoom sets x inside the window; the range function above always gives it whole
        setScale: [(u, key) => {
          const sc = u.scales.x;
          if (key === "x" && view && (sc.min > view.from + 1e-3 || sc.max < view.to - 1e-3)) zoomed = true;
        }],
      },
    };
  }

  function draw() {
    if (plot) plot.destroy();
    plot = null;
    zoomed = false;
    AA.clear(box);
    if (!series.length) return;
    plot = new uPlot(options(), aligned(view.rel ? Date.now() / 1000 : undefined), box);
    box.dataset.points = String(series.reduce((a, s) => a + s.xs.length, 0));
  }

  // ------------------------------------------------------------------ live values

  /*
   * A live sample joins its trace when it is newer than the trace's last point (the first
   * update is usually the archived last value again).  On a binned range a trace keeps one
   * live point per bin, the latest, so a day's chart does not grow by a point a second.
   */
  function takeLive(s, smp) {
    const last = s.xs.length - 1;
    if (last >= 0 && smp.t <= s.xs[last]) return false;
    const bin = view.bin ? Math.floor(smp.t / view.bin) : null;
    if (bin !== null && s.liveBin === bin && s.lastIsLive) {
      s.xs[last] = smp.t;
      s.ys[last] = smp.y;
    } else {
      s.xs.push(smp.t);
      s.ys.push(smp.y);
      s.live += 1;
    }
    s.liveBin = bin;
    s.lastIsLive = true;
    return true;
  }

  /* Drop what slid out of the window, keeping the last point before it (its step enters). */
  function trim(from) {
    for (const s of series) {
      let i = 0;
      while (i + 1 < s.xs.length && s.xs[i + 1] <= from) i += 1;
      if (i > 0) {
        s.xs.splice(0, i);
        s.ys.splice(0, i);
      }
    }
  }

  function onUpdate(name, state, msg) {
    const s = series.find((x) => x.name === name);
    if (!s) return;
    if (!s.unit && state.units && typeof state.units === "string") {
      // a PV with no archived data learns its unit from its first live value: redraw so its
      // trace joins that unit's axis and its legend says the unit
      s.unit = state.units;
      if (plot) draw();
    }
    const smp = PVWS.sampleOf(msg);
    if (!smp) return;
    const item = itemOf(name);
    if (item) {
      const disconnected = smp.y === null && state.severity === "INVALID";
      item.querySelector(".latest").textContent = disconnected ? "disconnected" : `= ${formatValue(smp.y)}`;
    }
    if (takeLive(s, smp) && item) {
      item.dataset.live = String(s.live);
      item.dataset.last = String(smp.t);
    }
  }

  function onLiveState(state) {
    liveInfo.dataset.state = state;
    const words = {
      connecting: "Live: connecting to /pvws/pv...",
      open: `Live: following ${names.length} PV(s) over /pvws/pv.`,
      closed: "Live: connection lost, retrying...",
      off: "Live: off (only a range ending now follows live values).",
    };
    liveInfo.textContent = words[state] || "";
  }

  function tick() {
    if (!view || !view.rel || !plot) return;
    const now = Date.now() / 1000;
    view.to = now;
    view.from = now - view.rel;
    trim(view.from);
    plot.setData(aligned(now), !zoomed);
    liveInfo.dataset.updates = String(live ? live.updates : 0);
    box.dataset.xmax = String(now);
  }

  function startLive() {
    stopLive();
    live = new PVWS.Client(names, onUpdate, onLiveState);
    ticker = setInterval(tick, REDRAW_MS);
  }

  function stopLive() {
    clearInterval(ticker);
    ticker = null;
    if (live) live.close();
    live = null;
  }

  // ------------------------------------------------------------------ the page

  function remember() {
    const url = new URL(window.location.href);
    url.searchParams.delete("pv");
    for (const n of names) url.searchParams.append("pv", n);
    url.searchParams.set("range", range.value);
    url.searchParams.delete("from");
    url.searchParams.delete("to");
    if (range.value === "custom") {
      url.searchParams.set("from", fromInput.value);
      url.searchParams.set("to", toInput.value);
    }
    window.history.replaceState(null, "", url);
  }

  async function run() {
    stopLive();
    const mine = ++gen;
    remember();
    if (!names.length) {
      series = [];
      view = null;
      drawList();
      draw();
      info.textContent = "";
      delete info.dataset.samples;
      throw new Error("Please type a PV name.");
    }
    const [from, to] = chosenRange();
    const seconds = (to - from) / 1000;
    const bin = raw.checked || seconds <= RAW_UP_TO_SECONDS ? 0 : Math.max(1, Math.ceil(seconds / MAX_POINTS));
    const rel = range.value === "custom" ? null : Number(range.value);
    drawList();
    info.textContent = `Fetching ${names.join(", ")}...`;
    const got = await Promise.all(names.map((n) => fetchOne(n, from, to, bin).catch((e) => ({
      name: n, xs: [], ys: [], unit: "", waveform: false, fetched: 0, live: 0,
      error: `${n}: ${e.message || e}${rel ? " (live values only)" : ""}`,
    }))));
    if (mine !== gen) return;
    series = got;
    view = { from: from.getTime() / 1000, to: to.getTime() / 1000, rel, bin };
    drawList();
    draw();
    const errors = series.filter((s) => s.error).map((s) => s.error);
    AA.message(errors, errors.length ? "error" : "info");
    const total = series.reduce((a, s) => a + s.fetched, 0);
    const what = bin ? `mean values over ${bin} s bins` : "samples";
    const each = series.map((s) => `${s.name} ${s.fetched}`).join(", ");
    info.textContent = `${total} ${what} (${each}), ${from.toLocaleString()} to ${rel ? "now" : to.toLocaleString()}.`;
    info.dataset.samples = String(total);
    if (rel) startLive();
  }

  async function plotNow() {
    try {
      await run();
    } catch (e) {
      AA.message(e.message || String(e), "error");
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    try {
      addNames(typedNames());
    } catch (e) {
      AA.message(e.message || String(e), "error");
      return;
    }
    plotNow();
  });

  addButton.addEventListener("click", () => form.requestSubmit());

  range.addEventListener("change", () => {
    if (range.value === "custom") {
      // the range no longer ends now: the live values stop at once, the chart stays
      stopLive();
      if (!fromInput.value) {
        const to = new Date();
        toInput.value = toLocalInput(to);
        fromInput.value = toLocalInput(new Date(to.getTime() - 3600 * 1000));
      }
    } else if (names.length) {
      plotNow();
    }
  });

  axesMode.addEventListener("change", () => {
    if (series.length) draw();
  });

  // uPlot's double-click resets the zoom; in the capture phase this runs first, so the reset
  // lands on the whole window again (and, while live, the window follows the clock again)
  box.addEventListener("dblclick", () => { zoomed = false; }, true);

  window.addEventListener("resize", () => {
    if (plot) plot.setSize({ width: Math.max(400, Math.min(1300, box.clientWidth || 1000)), height: 420 });
  });

  const q = AA.params();
  if (q.get("range")) range.value = q.get("range");
  if (q.get("from")) fromInput.value = q.get("from");
  if (q.get("to")) toInput.value = q.get("to");
  const given = q.getAll("pv").flatMap((p) => p.split(/\s+/)).filter(Boolean);
  if (given.length) {
    pvInput.value = given.join(" ");
    form.requestSubmit();
  }
})();
