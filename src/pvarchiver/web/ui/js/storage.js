/*
 * Storage page: space per store (STS, MTS, LTS, ...).
 *
 * The AA's getStorageMetrics answers either per store ({name, total_space, available_space,
 * available_space_percent}, GB as strings that may carry thousands separators) or, in a
 * cluster, per appliance; then each appliance's stores come from
 * getStorageMetricsForAppliance.  Both shapes are drawn here.
 */
"use strict";

(() => {
  const out = document.getElementById("storagediv");
  AA.nav("storage.html");

  const KNOWN = ["name", "total_space", "available_space", "available_space_percent"];
  const num = (v) => Number(String(v === undefined || v === null ? "" : v).replace(/,/g, ""));
  const isStoreRow = (r) => r && typeof r === "object" && ("total_space" in r || "available_space" in r);

  function usedBar(r) {
    const pct = num(r.available_space_percent);
    if (!Number.isFinite(pct)) return "";
    const used = Math.max(0, Math.min(100, 100 - pct));
    return [
      AA.el("span", { class: "barbox", title: `${used.toFixed(1)} % used` },
        AA.el("span", { class: "bar", style: `width:${used.toFixed(1)}%` })),
      `${used.toFixed(1)} %`,
    ];
  }

  function storeTable(rows, id) {
    const extra = AA.columnsOf(rows).filter((k) => !KNOWN.includes(k));
    const columns = [
      { key: "name", label: "Name" },
      { key: "total_space", label: "Total space (GB)" },
      { key: "available_space", label: "Available space (GB)" },
      { key: "available_space_percent", label: "Available space (%)" },
      { key: "used", label: "Used", render: usedBar },
      ...extra.map((key) => ({ key })),
    ];
    // our own keys (lowSpace, writeFailing, ...): such a store is drawn in red
    return AA.table(columns, rows, { id }, (r) => ({
      "data-store": r.name,
      class: r.writeFailing === "true" ? "failing" : r.lowSpace === "true" ? "lowspace" : null,
    }));
  }

  async function load() {
    let rows;
    try {
      rows = AA.asList(await AA.bpl("getStorageMetrics"));
    } catch (e) {
      AA.message(`Could not get the storage metrics: ${e.message}`, "error");
      return;
    }
    AA.clear(out);
    if (!rows.length) {
      out.appendChild(AA.el("p", null, "The server reported no stores."));
      return;
    }
    if (rows.every(isStoreRow)) {
      out.appendChild(storeTable(rows, "storageTable"));
      return;
    }
    // per-appliance summary first, as the AA's page, then each appliance's stores
    const apps = rows.filter((r) => r && typeof r === "object");
    out.appendChild(AA.table(AA.columnsOf(apps).map((key) => ({ key })), apps, { id: "storageClusterTable" }));
    for (const app of apps) {
      const id = app.instance || app.identity || app.appliance || app.name;
      if (!id) continue;
      out.appendChild(AA.el("h4", null, String(id)));
      try {
        const stores = AA.asList(await AA.bpl("getStorageMetricsForAppliance", { appliance: id }));
        out.appendChild(storeTable(stores.filter(isStoreRow), "storageTable"));
      } catch (e) {
        out.appendChild(AA.el("p", { class: "msg error" }, `getStorageMetricsForAppliance: ${e.message}`));
      }
    }
  }

  load();
})();
