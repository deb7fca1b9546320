/*
 * PV details page (pvdetails.html?pv=NAME): every row of getPVDetails, the stores and the
 * type info, with the AA's per-PV actions.  Each action reports the server's own answer
 * ({"status":"ok","desc":...} or {"validation":...}) and then reloads the details.
 */
"use strict";

(() => {
  const pv = AA.params().get("pv") || "";
  const details = document.getElementById("detailsdiv");
  const storesDiv = document.getElementById("storesdiv");
  const typeinfo = document.getElementById("typeinfo");
  let storeNames = [];

  AA.nav("");
  document.getElementById("pvName").textContent = pv;
  document.getElementById("chartLink").href = "chart.html?pv=" + encodeURIComponent(pv);
  document.title = `Appliance archiver - ${pv}`;

  function say(result, fallback) {
    const r = AA.asList(result)[0];
    if (r && r.validation) {
      AA.message(r.validation, "error");
      return false;
    }
    AA.message((r && (r.desc || (r.status && r.status !== "ok" ? r.status : ""))) || fallback, "ok");
    return true;
  }

  async function load() {
    AA.clear(details);
    try {
      const rows = AA.asList(await AA.bpl("getPVDetails", { pv }));
      details.appendChild(AA.table([
        { key: "name", label: "Name" },
        { key: "value", label: "Value" },
        { key: "source", label: "Source" },
      ], rows.filter((r) => r && typeof r === "object"), { id: "pvDetailsTable" },
      // "Writes to the STS failing since/because": the store does not take its samples
      (r) => ({ class: /^Writes to the .* failing /.test(String(r.name)) ? "failing" : null })));
    } catch (e) {
      details.appendChild(AA.el("p", { class: "msg error", id: "detailsError" }, `getPVDetails: ${e.message}`));
    }
    AA.clear(storesDiv);
    try {
      const stores = (await AA.bpl("getStoresForPV", { pv })) || {};
      storeNames = Object.keys(stores);
      storesDiv.appendChild(AA.table([
        { key: "name", label: "Store" },
        { key: "url", label: "URL" },
      ], Object.entries(stores).map(([name, url]) => ({ name, url })), { id: "storesTable" }));
    } catch (e) {
      storeNames = [];
      storesDiv.appendChild(AA.el("p", { class: "small" }, `getStoresForPV: ${e.message}`));
    }
    try {
      typeinfo.textContent = JSON.stringify(await AA.bpl("getPVTypeInfo", { pv }), null, 2);
    } catch (e) {
      typeinfo.textContent = `getPVTypeInfo: ${e.message}`;
    }
  }

  function action(id, fn) {
    document.getElementById(id).addEventListener("click", async () => {
      const buttons = document.querySelectorAll("#pvActions button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await fn();
      } catch (e) {
        AA.message(e.message || String(e), "error");
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }

  action("pvRefresh", load);

  action("pvPause", async () => {
    say(await AA.bpl("pauseArchivingPV", { pv }), `Paused ${pv}.`);
    await load();
  });

  action("pvResume", async () => {
    say(await AA.bpl("resumeArchivingPV", { pv }), `Resumed ${pv}.`);
    await load();
  });

  action("pvChangeParams", async () => {
    const form = await AA.ask(document.getElementById("paramsDialog"));
    if (!form) return;
    const period = Number(form.get("samplingperiod"));
    if (!Number.isFinite(period) || period <= 0) throw new Error("The sampling period must be a positive number of seconds.");
    say(await AA.bpl("changeArchivalParameters", {
      pv, samplingperiod: String(period), samplingmethod: String(form.get("samplingmethod")),
    }), `Changed the archival parameters of ${pv}.`);
    await load();
  });

  action("pvDelete", async () => {
    document.getElementById("deleteDataCheckbox").checked = false;
    const form = await AA.ask(document.getElementById("deleteDialog"));
    if (!form) return;
    const deleteData = form.get("deleteData") === "true" ? "true" : "false";
    try {
      await AA.bpl("pauseArchivingPV", { pv });
    } catch (_) { /* already paused, or in the workflow: deletePV says what is wrong */ }
    if (say(await AA.bpl("deletePV", { pv, deleteData }), `Deleted ${pv}.`)) {
      AA.clear(details);
      AA.clear(storesDiv);
      typeinfo.textContent = "";
      details.appendChild(AA.el("p", null, [
        `${pv} is no longer archived${deleteData === "true" ? " and its data are deleted" : ""}. `,
        AA.el("a", { href: "index.html?pv=" + encodeURIComponent(pv) }, "Check its status"),
      ]));
    }
  });

  action("pvConsolidate", async () => {
    const select = AA.clear(document.getElementById("consolidateStore"));
    const choices = storeNames.length ? storeNames : ["LTS", "MTS", "STS"];
    for (const s of choices) select.appendChild(AA.el("option", { value: s }, s));
    select.value = choices[choices.length - 1];
    const form = await AA.ask(document.getElementById("consolidateDialog"));
    if (!form) return;
    const storage = String(form.get("storage"));
    say(await AA.bpl("consolidateDataForPV", { pv, storage }), `Consolidated the data of ${pv} into ${storage}.`);
    await load();
  });

  action("pvRename", async () => {
    document.getElementById("renameInput").value = pv;
    const form = await AA.ask(document.getElementById("renameDialog"));
    if (!form) return;
    const newname = String(form.get("newname") || "").trim();
    if (!AA.validName(newname)) throw new Error(`Not a valid PV name: ${newname}`);
    if (say(await AA.bpl("renamePV", { pv, newname }), `Renamed ${pv} to ${newname}.`)) {
      window.location.search = "?pv=" + encodeURIComponent(newname);
    }
  });

  if (!pv) {
    AA.message("No PV given: open this page as pvdetails.html?pv=NAME (the Details link on the home page).", "error");
    document.querySelectorAll("#pvActions button").forEach((b) => (b.disabled = true));
  } else {
    load();
  }
})();
