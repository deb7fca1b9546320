/*
 * Quick chart: one PV over a chosen range, from /retrieval/data/getData.json, drawn with the
 * vendored uPlot.
 *
 * Ranges longer than an hour are asked for as mean_<bin>(PV), with the bin chosen to give
 * about MAX_POINTS points, so a week of a 10 Hz PV is a few thousand points rather than six
 * million; "every sample" overrides that.  Values are drawn as steps: an archived value
 * holds until the next sample.
 */
"use strict";

(() => {
  const MAX_POINTS = 3000;
  const RAW_UP_TO_SECONDS = 3600;

  const form = document.getElementById("chartForm");
  const pvInput = document.getElementById("chartPV");
  const range = document.getElementById("chartRange");
  const fromInput = document.getElementById("chartFrom");
  const toInput = document.getElementById("chartTo");
  const raw = document.getElementById("chartRaw");
  const info = document.getElementById("chartInfo");
  const box = document.getElementById("chart");
  let plot = null;
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

  function draw(name, samples, meta) {
    const xs = new Array(samples.length);
    const ys = new Array(samples.length);
    let numbers = 0;
    let waveform = false;
    samples.forEach((s, i) => {
      xs[i] = s.secs + (s.nanos || 0) / 1e9;
      ys[i] = numeric(s.val);
      if (ys[i] !== null) numbers += 1;
      if (Array.isArray(s.val)) waveform = true;
    });
    if (samples.length && !numbers) throw new Error(`${name} has no numeric values to draw (a string PV?).`);
    const unit = meta && meta.EGU ? ` (${meta.EGU})` : "";
    const opts = {
      width: Math.max(400, Math.min(1300, box.clientWidth || 1000)),
      height: 420,
      scales: { x: { time: true } },
      series: [
        {},
        {
          label: name + (waveform ? " [element 0]" : "") + unit,
          stroke: "#2f6fb3",
          width: 1.5,
          spanGaps: false,
          paths: uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
          points: { show: samples.length < 200 },
        },
      ],
      axes: [{}, { label: unit ? meta.EGU : "" }],
    };
    if (plot) plot.destroy();
    AA.clear(box);
    plot = new uPlot(opts, [xs, ys], box);
    box.dataset.points = String(samples.length);
  }

  async function run() {
    const name = pvInput.value.trim();
    if (!AA.validName(name)) throw new Error(name ? `Not a valid PV name: ${name}` : "Please type a PV name.");
    const [from, to] = chosenRange();
    const seconds = (to - from) / 1000;
    const bin = raw.checked || seconds <= RAW_UP_TO_SECONDS ? 0 : Math.max(1, Math.ceil(seconds / MAX_POINTS));
    const pvParam = bin ? `mean_${bin}(${name})` : name;
    const url = new URL(window.location.href);
    url.searchParams.set("pv", name);
    url.searchParams.set("range", range.value);
    if (range.value === "custom") {
      url.searchParams.set("from", fromInput.value);
      url.searchParams.set("to", toInput.value);
    }
    window.history.replaceState(null, "", url);
    const mine = ++gen;
    info.textContent = `Fetching ${pvParam}...`;
    const result = await AA.retrieval("data/getData.json", {
      pv: pvParam, from: from.toISOString(), to: to.toISOString(),
    });
    if (mine !== gen) return;
    const stream = AA.asList(result)[0] || { meta: {}, data: [] };
    const samples = stream.data || [];
    draw(name, samples, stream.meta || {});
    AA.message("", "info");
    const what = bin ? `${samples.length} mean values over ${bin} s bins` : `${samples.length} samples`;
    info.textContent = `${name}: ${what}, ${from.toLocaleString()} to ${to.toLocaleString()}.`;
    info.dataset.samples = String(samples.length);
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await run();
    } catch (e) {
      info.textContent = "";
      AA.message(e.message || String(e), "error");
    }
  });

  range.addEventListener("change", () => {
    if (range.value === "custom" && !fromInput.value) {
      const to = new Date();
      toInput.value = toLocalInput(to);
      fromInput.value = toLocalInput(new Date(to.getTime() - 3600 * 1000));
    }
  });

  const q = AA.params();
  if (q.get("range")) range.value = q.get("range");
  if (q.get("from")) fromInput.value = q.get("from");
  if (q.get("to")) toInput.value = q.get("to");
  if (q.get("pv")) {
    pvInput.value = q.get("pv");
    form.requestSubmit();
  }
})();
