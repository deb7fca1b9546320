/*
 * Metrics page: getApplianceMetrics (one row per appliance), and on a click the appliance's
 * attribute/detail rows (getApplianceMetricsForAppliance, as the AA's page does).  If the
 * server has no per-appliance call, the row's own fields are shown instead.
 */
"use strict";

(() => {
  const out = document.getElementById("metricsdiv");
  const detail = document.getElementById("detaildiv");
  const title = document.getElementById("detailTitle");

  AA.nav("metrics.html");

  const pick = (r, ...keys) => {
    for (const k of keys) if (r[k] !== undefined && r[k] !== null && r[k] !== "") return AA.cellText(r[k]);
    return "";
  };

  const COLUMNS = [
    { key: "instance", label: "Appliance Name", render: (r) => pick(r, "instance", "identity", "appliance", "name") },
    { key: "status", label: "Status", render: (r) => pick(r, "status") },
    { key: "pvCount", label: "PV Count", render: (r) => pick(r, "pvCount") },
    { key: "connectedPVCount", label: "Connected", render: (r) => pick(r, "connectedPVCount") },
    { key: "eventRate", label: "Event Rate (events/s)", render: (r) => pick(r, "eventRate") },
    { key: "dataRate", label: "Data Rate", render: (r) => pick(r, "dataRate", "dataRateGBPerDay") },
    { key: "capacityUtilized", label: "Capacity consumed", render: (r) => pick(r, "capacityUtilized", "capacityConsumed") },
  ];

  function rowsOfObject(obj) {
    return Object.entries(obj).map(([name, value]) => ({ name, value: AA.cellText(value) }));
  }

  async function showDetail(row) {
    const appliance = pick(row, "instance", "identity", "appliance", "name");
    title.textContent = `Details for ${appliance || "this appliance"}`;
    title.hidden = false;
    AA.clear(detail);
    let rows;
    try {
      rows = AA.asList(await AA.bpl("getApplianceMetricsForAppliance", { appliance }));
    } catch (e) {
      rows = rowsOfObject(row);  // the summary's own fields are the best we have
      detail.appendChild(AA.el("p", { class: "small" }, `(getApplianceMetricsForAppliance: ${e.message}; showing the summary fields)`));
    }
    const objects = rows.map((r) => (r && typeof r === "object" ? r : { name: "", value: r }));
    detail.appendChild(AA.table([
      { key: "name", label: "Attribute" },
      { key: "value", label: "Detail" },
    ], objects, { id: "metricsDetailTable" }));
  }

  async function load() {
    let rows;
    try {
      rows = AA.asList(await AA.bpl("getApplianceMetrics"));
    } catch (e) {
      AA.message(`Could not get the appliance metrics: ${e.message}`, "error");
      return;
    }
    const objects = rows.filter((r) => r && typeof r === "object");
    AA.clear(out);
    if (!objects.length) {
      out.appendChild(AA.el("p", null, "The server reported no appliances."));
      return;
    }
    const t = AA.table(COLUMNS, objects, { id: "metricsTable", class: "grid clickable" });
    t.querySelectorAll("tbody tr").forEach((tr, i) => tr.addEventListener("click", () => showDetail(objects[i])));
    out.appendChild(t);
    out.appendChild(AA.el("p", { class: "small" }, "Click an appliance for its details."));
    if (objects.length === 1) showDetail(objects[0]);
  }

  load();
})();
