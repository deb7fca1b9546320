/*
 * PV details page (pvdetails.html?pv=NAME): every row of getPVDetails, the stores (with what
 * each keeps, from js/stores.js) and the type info, with the AA's per-PV actions.  Each
 * action reports the server's own answer ({"status":"ok","desc":...} or {"validation":...},
 * shown verbatim) and then reloads the details.
 */
"use strict";

(() => {
  const pv = AA.params().get("pv") || "";
  const details = document.getElementById("detailsdiv");
  const storesDiv = document.getElementById("storesdiv");
  const typeinfo = document.getElementById("typeinfo");
  const retentionLine = document.getElementById("retentionLine");
  let storeNames = [];
  let storeURLs = {};
  let info = null;

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
    retentionLine.textContent = "";
    try {
      storeURLs = (await AA.bpl("getStoresForPV", { pv })) || {};
      storeNames = Object.keys(storeURLs);
      const chain = AAStores.chain(storeURLs);
      retentionLine.textContent = AAStores.summary(chain);
      storesDiv.appendChild(storesTable(chain));
    } catch (e) {
      storeNames = [];
      storeURLs = {};
      storesDiv.appendChild(AA.el("p", { class: "small" }, `getStoresForPV: ${e.message}`));
    }
    try {
      info = await AA.bpl("getPVTypeInfo", { pv });
      typeinfo.textContent = JSON.stringify(info, null, 2);
    } catch (e) {
      info = null;
      typeinfo.textContent = `getPVTypeInfo: ${e.message}`;
    }
    const paused = info && String(info.paused) === "true";
    for (const note of document.querySelectorAll(".pausedNote")) {
      note.textContent = paused ? "" : `${pv} is not paused: pause it first, or the server refuses.`;
      note.hidden = paused;
    }
  }

  /* One row per store of the chain, in order; the URL's keys in their own columns. */
  function storesTable(chain) {
    const holdGather = (s) => (s.hold === null && s.gather === null ? ""
      : `hold ${s.hold || 0}, gather ${s.gather || 0}`);
    return AA.table([
      { key: "name", label: "Store" },
      { key: "kind", label: "Kind" },
      { key: "folder", label: "Folder" },
      { key: "granularity", label: "Partition granularity" },
      { key: "holdGather", label: "Hold/gather", render: holdGather },
      { key: "reducedata", label: "reducedata" },
      { key: "pp", label: "pp", render: (s) => s.pp.join(", ") },
      { key: "retention", label: "Retention" },
      { key: "url", label: "URL" },
    ], chain, { id: "storesTable" }, (s) => ({ "data-store": s.name, "data-kind": s.kind }));
  }

  /* The store <select> of a dialog, filled with the PV's stores; the URL box follows it. */
  function storeChoice(selectId, urlId) {
    const select = AA.clear(document.getElementById(selectId));
    for (const s of storeNames) select.appendChild(AA.el("option", { value: s }, s));
    const box = document.getElementById(urlId);
    const follow = () => { box.value = storeURLs[select.value] || ""; };
    select.onchange = follow;
    follow();
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
    // the last real store: consolidating into a blackhole would delete (the server refuses)
    const real = choices.filter((c) => !/^blackhole:/i.test(storeURLs[c] || ""));
    select.value = (real.length ? real : choices)[(real.length ? real : choices).length - 1];
    document.getElementById("consolidateDate").value = "";
    const form = await AA.ask(document.getElementById("consolidateDialog"));
    if (!form) return;
    const storage = String(form.get("storage"));
    const date = String(form.get("date") || "").trim();  // the server checks it (ISO-8601)
    say(await AA.bpl("consolidateDataForPV", { pv, storage, date }), `Consolidated the data of ${pv} into ${storage}.`);
    await load();
  });

  action("pvChangeStore", async () => {
    if (!storeNames.length) throw new Error(`getStoresForPV gave no stores for ${pv}.`);
    storeChoice("changeStoreStore", "changeStoreURL");
    const form = await AA.ask(document.getElementById("changeStoreDialog"));
    if (!form) return;
    const storage = String(form.get("storage"));
    const newbackend = String(form.get("newbackend") || "").trim();
    say(await AA.bpl("changeStore", { pv, storage, newbackend }), `Changed the store ${storage} of ${pv}.`);
    await load();
  });

  action("pvModifyStoreURL", async () => {
    if (!storeNames.length) throw new Error(`getStoresForPV gave no stores for ${pv}.`);
    storeChoice("modifyStoreStore", "modifyStoreURL");
    const form = await AA.ask(document.getElementById("modifyStoreDialog"));
    if (!form) return;
    const storage = String(form.get("storage"));
    const url = String(form.get("plugin_url") || "").trim();
    // the AA answers an empty body; ours the new typeinfo: either is a success
    say(await AA.bpl("modifyStoreURLForPV", { pv, storage, plugin_url: url }), `Changed the URL of the store ${storage} of ${pv}.`);
    await load();
  });

  action("pvChangeType", async () => {
    const select = AA.clear(document.getElementById("changeTypeSelect"));
    for (const t of AAStores.DBR_TYPES) select.appendChild(AA.el("option", { value: t }, t));
    if (info && AAStores.DBR_TYPES.includes(info.DBRType)) select.value = info.DBRType;
    document.getElementById("changeTypeForce").checked = false;
    const form = await AA.ask(document.getElementById("changeTypeDialog"));
    if (!form) return;
    const newtype = String(form.get("newtype"));
    const force = form.get("force") === "true" ? "true" : "";  // unticked: not sent
    say(await AA.bpl("changeTypeForPV", { pv, newtype, force }), `Changed the type of ${pv} to ${newtype}.`);
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
