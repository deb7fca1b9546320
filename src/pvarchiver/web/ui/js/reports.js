/*
 * Reports page: the AA's report BPL calls, one table each.
 *
 * Every call carries a `limit` (the AA's "max PVs per appliance"): the "Top 100/200"
 * entries fix it, the others take the "Show at most" choice, so a report on a site with
 * 100,000 PVs never pulls the whole registry into the browser.  Columns are whatever
 * keys the rows have, in the server's order, so new report fields show up unchanged.
 */
"use strict";

(() => {
  // the AA's columns for the meta gets report (lowLevel, a JSON string, is left out as there)
  const META_GETS = [
    ["pvName", "PV Name"], ["isScheduled", "Monitoring started?"], ["appliance", "Appliance"],
    ["scheduleStart", "When?"], ["timerRemaining", "Remaining"], ["timerDone", "Timer Done"],
    ["usePVAccess", "Using pvAccess"], ["eventsSoFar", "Events so far"],
    ["storageSoFar", "Storage so far"], ["internalState", "Internal State"], ["mainMeta", "MainMeta"],
  ];
  // [label, BPL action, fixed limit or null (use the "Show at most" choice), options]
  // options: noLimit (the action takes no `limit`: the page cuts the answer instead),
  // keyed (the answer is an object keyed by PV name), columns ([key, label] to show)
  const REPORTS = [
    ["PV's that may not exist", "getNeverConnectedPVs", null],
    ["PV's that are currently in the METAINFO_REQUESTED", "getMetaGets", null, { noLimit: true, columns: META_GETS }],
    ["Currently disconnected PVs", "getCurrentlyDisconnectedPVs", null],
    ["Paused PVs", "getPausedPVsReport", null],
    ["Top 100 PVs by event rate", "getEventRateReport", 100],
    ["Top 200 PVs by event rate", "getEventRateReport", 200],
    ["Top 100 PVs by storage rate", "getStorageRateReport", 100],
    ["Top 200 PVs by storage rate", "getStorageRateReport", 200],
    ["Recently added PVs (100)", "getRecentlyAddedPVs", 100],
    ["Recently added PVs (200)", "getRecentlyAddedPVs", 200],
    ["Recently modified PVs (100)", "getRecentlyModifiedPVs", 100],
    ["Recently modified PVs (200)", "getRecentlyModifiedPVs", 200],
    ["PVs by lost/regained connections (100)", "getLostConnectionsReport", 100],
    ["PVs by lost/regained connections (200)", "getLostConnectionsReport", 200],
    ["PVs by last known timestamp (100)", "getSilentPVsReport", 100],
    ["PVs by last known timestamp (200)", "getSilentPVsReport", 200],
    ["PVs by storage consumed (100)", "getPVsByStorageConsumed", 100],
    ["PVs by storage consumed (200)", "getPVsByStorageConsumed", 200],
    ["PVs with dropped events from incorrect timestamps (100)", "getPVsByDroppedEventsTimestamp", 100],
    ["PVs with dropped events from incorrect timestamps (200)", "getPVsByDroppedEventsTimestamp", 200],
    ["PVs with dropped events from buffer overflows (100)", "getPVsByDroppedEventsBuffer", 100],
    ["PVs with dropped events from buffer overflows (200)", "getPVsByDroppedEventsBuffer", 200],
    ["Slow changing PVs with dropped events", "getSlowChangingPVsWithDroppedEvents", null],
    ["Archived waveforms", "getArchivedWaveforms", null, { noLimit: true }],
    ["Time span of PVs (creation and last event)", "getTimeSpanReport", null, { noLimit: true, keyed: true }],
  ];
  const PAGE_ROWS = 500;

  const select = document.getElementById("reportSelect");
  const limitSelect = document.getElementById("reportLimit");
  const info = document.getElementById("reportInfo");
  const out = document.getElementById("reportdiv");
  let gen = 0;

  AA.nav("reports.html");
  REPORTS.forEach(([label, action], i) => select.appendChild(AA.el("option", { value: String(i), "data-action": action }, label)));

  /* getMetaGets' mainMeta is the AA's HTML list (<ul><li>...</li></ul>): read as text in an
     inert document (DOMParser runs no script) and drawn as our own list, never as HTML. */
  function htmlList(text) {
    const doc = new DOMParser().parseFromString(String(text || ""), "text/html");
    const items = [...doc.querySelectorAll("li")].map((li) => li.textContent);
    if (!items.length) return doc.body.textContent || "";
    return AA.el("ul", { class: "meta" }, items.map((t) => AA.el("li", null, t)));
  }

  function column(key) {
    if (key === "pvName") return { key, label: "PV Name", render: (r) => AA.pvDetailsLink(String(r.pvName)) };
    if (key === "mainMeta") return { key, render: (r) => htmlList(r.mainMeta) };
    return { key };
  }

  async function run() {
    const i = select.value;
    AA.message("", "info");
    if (i === "") {
      AA.clear(out);
      info.textContent = "";
      return;
    }
    const [label, action, fixed, opts = {}] = REPORTS[Number(i)];
    const limit = fixed || Number(limitSelect.value);
    const mine = ++gen;
    info.textContent = `Running "${label}"...`;
    let rows;
    try {
      const answer = await AA.bpl(action, opts.noLimit ? {} : { limit });
      // getTimeSpanReport: {pv: row}; its rows carry pvName, but a missing one is the key
      rows = opts.keyed && answer && typeof answer === "object" && !Array.isArray(answer)
        ? Object.entries(answer).map(([pvName, r]) => Object.assign({ pvName }, r))
        : AA.asList(answer);
    } catch (e) {
      if (mine !== gen) return;
      info.textContent = "";
      AA.clear(out);
      AA.message(`The report "${label}" failed: ${e.message}`, "error");
      return;
    }
    if (mine !== gen) return;
    // a server that ignores `limit` must still not flood the page
    const shown = rows.slice(0, limit);
    info.textContent = `${label}: ${rows.length} row(s)` + (rows.length > shown.length ? `, first ${shown.length} shown` : "") + ` (${action}).`;
    AA.clear(out);
    if (!shown.length) {
      out.appendChild(AA.el("p", { id: "reportEmpty" }, "No PVs in this report."));
      return;
    }
    const objects = shown.map((r) => (r && typeof r === "object" ? r : { pvName: r }));
    const columns = opts.columns
      ? opts.columns.map(([key, lbl]) => Object.assign(column(key), { label: lbl }))
      : AA.columnsOf(objects).map(column);
    AA.pagedTable(out, columns, objects, PAGE_ROWS, { id: "reportTable" });
  }

  select.addEventListener("change", run);
  limitSelect.addEventListener("change", run);
  document.getElementById("reportRun").addEventListener("click", run);

  const wanted = AA.params().get("report");
  if (wanted) {
    const idx = REPORTS.findIndex(([, action]) => action === wanted);
    if (idx >= 0) {
      select.value = String(idx);
      run();
    }
  }
})();
