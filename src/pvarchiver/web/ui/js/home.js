/*
 * Home page: the AA's "archstat" box (Check Status, Archive, Lookup, Pause, Resume, Delete).
 *
 * Scale: a site may have 100,000 PVs and paste thousands of names.  So globs are expanded
 * with getAllPVs and a cap, the status table asks getPVStatus for one page of names at a
 * time (and auto-refreshes only that page), and archive/pause/resume go out in chunks.
 */
"use strict";

(() => {
  const STORE_KEY = "archstatpVNames";
  const LOOKUP_LIMIT = 10000;     // most names one glob may expand to
  const POST_CHUNK = 2000;        // names per archivePV/pause/resume POST
  const FIRST_DELAY_MS = 1000;    // auto-refresh starts quick (sampling takes seconds here)...
  const MAX_DELAY_MS = 30000;     // ...and backs off while something stays not archived
  const DELETE_PARALLEL = 4;

  const box = document.getElementById("archstatpVNames");
  const out = document.getElementById("archstatsdiv");
  const refreshState = document.getElementById("refreshState");

  const state = { names: [], page: 0, pageSize: 100, timer: null, delay: FIRST_DELAY_MS, gen: 0 };
  let policiesLoaded = false;

  AA.nav("index.html");
  box.value = sessionStorage.getItem(STORE_KEY) || "";
  box.addEventListener("input", () => sessionStorage.setItem(STORE_KEY, box.value));

  function stopRefresh() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
    refreshState.hidden = true;
  }

  /* Names from the box, checked; globs allowed only where the action can expand them. */
  function namesFromBox(allowGlobs) {
    const names = AA.parseNames(box.value);
    if (!names.length) throw new Error("Please type in some PV names (one per line).");
    const bad = names.filter((n) => !(AA.isGlob(n) ? allowGlobs && AA.validPattern(n) : AA.validName(n)));
    if (bad.length) {
      const why = !allowGlobs && bad.some(AA.isGlob)
        ? "This action takes PV names, not patterns (* and ?): " : "These are not valid PV names: ";
      throw new Error(why + bad.slice(0, 10).join(", ") + (bad.length > 10 ? ` and ${bad.length - 10} more` : ""));
    }
    return names;
  }

  /* Globs -> archived names (getAllPVs, capped); plain names stay as typed. */
  async function expand(names) {
    const out = [];
    const seen = new Set();
    const notes = [];
    for (const n of names) {
      let got = [n];
      if (AA.isGlob(n)) {
        got = AA.asList(await AA.bpl("getAllPVs", { pv: n, limit: LOOKUP_LIMIT }));
        if (!got.length) notes.push(`No archived PV matches ${n}.`);
        if (got.length >= LOOKUP_LIMIT) notes.push(`${n} matches more than ${LOOKUP_LIMIT} PVs; only the first ${LOOKUP_LIMIT} are used. Narrow the pattern.`);
      }
      for (const g of got) {
        if (!seen.has(g)) {
          seen.add(g);
          out.push(g);
        }
      }
    }
    return { names: out, notes };
  }

  function yesNo(v) {
    if (v === undefined || v === null || v === "") return "";
    if (v === "true" || v === true) return "Yes";
    if (v === "false" || v === false) return "No";
    return String(v);
  }

  async function abort(name) {
    try {
      const r = await AA.bpl("abortArchivingPV", { pv: name });
      AA.message((r && (r.desc || r.validation)) || `Aborted request for archiving PV ${name}`, "ok");
    } catch (e) {
      AA.message(`Could not abort ${name}: ${e.message}`, "error");
    }
    showStatus();
  }

  /* The status string as the server sends it (AA clients rely on it) and, when the PV's
     samples have not reached its store for more than two write periods, why. */
  function statusCell(r) {
    if (!r.archiveWriteError) return AA.cellText(r.status);
    const store = r.archiveWriteErrorStore || "store";
    return [
      AA.cellText(r.status),
      AA.el("div", { class: "reason" },
        `Writes to the ${store} failing since ${r.archiveWriteErrorSince || "?"}: ${r.archiveWriteError}`),
    ];
  }

  const failing = (r) => Boolean(r.archiveWriteError);

  const COLUMNS = [
    { key: "pvName", label: "PV Name" },
    { key: "status", label: "Status", render: statusCell },
    { key: "appliance", label: "Appliance" },
    { key: "connectionState", label: "Connected?", render: (r) => yesNo(r.connectionState) },
    { key: "isMonitored", label: "Monitored?", render: (r) => yesNo(r.isMonitored) },
    { key: "samplingPeriod", label: "Sampling period" },
    { key: "lastEvent", label: "Last event" },
    {
      key: "details", label: "Details",
      render: (r) => {
        const bits = [AA.el("a", { href: "pvdetails.html?pv=" + encodeURIComponent(r.pvNameOnly || r.pvName) }, "Details")];
        if (r.status === "Initial sampling") {
          bits.push(" ", AA.el("button", {
            type: "button", class: "abort", title: "Abort the request for archiving this PV",
            onclick: () => abort(r.pvName),
          }, "Abort"));
        }
        return bits;
      },
    },
    { key: "chart", label: "Quick chart", render: (r) => AA.chartLink(r.pvNameOnly || r.pvName) },
  ];

  function pager() {
    const total = state.names.length;
    const pages = Math.ceil(total / state.pageSize);
    if (pages <= 1) return null;
    const start = state.page * state.pageSize;
    const go = (p) => () => {
      state.page = p;
      state.delay = FIRST_DELAY_MS;
      showStatus();
    };
    return AA.el("div", { class: "pager" }, [
      AA.el("button", { type: "button", id: "statusPrev", disabled: state.page === 0, onclick: go(state.page - 1) }, "Previous"),
      ` PVs ${start + 1}-${Math.min(total, start + state.pageSize)} of ${total} `,
      AA.el("button", { type: "button", id: "statusNext", disabled: state.page >= pages - 1, onclick: go(state.page + 1) }, "Next"),
    ]);
  }

  /* Ask getPVStatus for the current page only, draw it, and schedule the next refresh. */
  async function showStatus() {
    stopRefresh();
    const gen = ++state.gen;
    const start = state.page * state.pageSize;
    const names = state.names.slice(start, start + state.pageSize);
    if (!names.length) {
      AA.clear(out);
      return;
    }
    let rows;
    try {
      rows = AA.asList(await AA.bplPost("getPVStatus", names, { reporttype: "short" }));
    } catch (e) {
      if (gen === state.gen) AA.message(`Could not get the status: ${e.message}`, "error");
      return;
    }
    if (gen !== state.gen) return;  // a newer request owns the table
    const byName = new Map();
    for (const r of rows) if (r && r.pvName !== undefined) byName.set(String(r.pvName), r);
    const ordered = names.map((n) => byName.get(n) || { pvName: n, status: "(no answer from the server)" });
    AA.clear(out);
    out.appendChild(AA.table(COLUMNS, ordered, { id: "archstatsTable" },
      (r) => ({
        "data-pv": r.pvName,
        "data-status": r.status,
        "data-write-error": failing(r) ? "true" : null,
        class: failing(r) ? "failing" : null,
      })));
    const p = pager();
    if (p) out.appendChild(p);
    // also while writes fail, so that a recovered store clears the red rows by itself
    const waiting = ordered.filter((r) => r.status !== "Being archived" || failing(r)).length;
    if (waiting) {
      const secs = Math.round(state.delay / 1000);
      const notArchived = ordered.filter((r) => r.status !== "Being archived").length;
      const nFailing = ordered.filter(failing).length;
      const parts = [];
      if (notArchived) parts.push(`${notArchived} of these PVs are not Being archived`);
      if (nFailing) parts.push(`${nFailing} cannot write to their store`);
      refreshState.textContent = `${parts.join("; ")}; refreshing in ${secs} s.`;
      refreshState.hidden = false;
      state.timer = setTimeout(showStatus, state.delay);
      state.delay = Math.min(MAX_DELAY_MS, Math.round(state.delay * 1.5));
    }
  }

  function startStatus(names) {
    state.names = names;
    state.page = 0;
    state.delay = FIRST_DELAY_MS;
    return showStatus();
  }

  /* Wrap a button's action: one at a time, errors to the message line. */
  function action(id, fn) {
    const button = document.getElementById(id);
    button.addEventListener("click", async () => {
      const buttons = document.querySelectorAll("main .buttons button");
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

  function tally(results, okWord) {
    const counts = new Map();
    const problems = [];
    for (const r of results) {
      if (r && r.validation) problems.push(r.validation);
      else if (r && r.status) counts.set(r.status, (counts.get(r.status) || 0) + 1);
    }
    const lines = [];
    for (const [s, c] of counts) lines.push(`${c} PV(s): ${s === "ok" ? okWord : s}`);
    for (const p of problems.slice(0, 20)) lines.push(p);
    if (problems.length > 20) lines.push(`... and ${problems.length - 20} more messages`);
    return { lines, problems: problems.length };
  }

  async function postInChunks(actionName, items) {
    const results = [];
    const parts = AA.chunks(items, POST_CHUNK);
    for (let i = 0; i < parts.length; i++) {
      if (parts.length > 1) AA.message(`${actionName}: sending ${i + 1} of ${parts.length} batches...`, "info");
      results.push(...AA.asList(await AA.bplPost(actionName, parts[i])));
    }
    return results;
  }

  async function archive(extra) {
    stopRefresh();
    const names = namesFromBox(false);
    const results = await postInChunks("archivePV", names.map((pv) => Object.assign({ pv }, extra || {})));
    const t = tally(results, "ok");
    AA.message(t.lines.length ? t.lines : ["Archive request sent."], t.problems ? "error" : "ok");
    await startStatus(names);
  }

  async function loadPolicies() {
    if (policiesLoaded) return;
    const select = document.getElementById("policySelect");
    try {
      const policies = await AA.bpl("getPolicyList");
      for (const [name, desc] of Object.entries(policies || {})) {
        select.appendChild(AA.el("option", { value: name }, desc ? `${name} - ${desc}` : name));
      }
      policiesLoaded = true;
    } catch (e) {
      AA.message(`Could not load the policy list: ${e.message}`, "error");
    }
  }

  action("archstatCheckStatus", async () => {
    stopRefresh();
    const { names, notes } = await expand(namesFromBox(true));
    AA.message(notes, "info");
    await startStatus(names);
  });

  action("archstatArchive", () => archive(null));

  action("archstatArchiveWithPeriod", async () => {
    namesFromBox(false);  // complain before opening the dialog
    await loadPolicies();
    const form = await AA.ask(document.getElementById("samplingDialog"));
    if (!form) return;
    const period = Number(form.get("samplingperiod"));
    if (!Number.isFinite(period) || period <= 0) throw new Error("The sampling period must be a positive number of seconds.");
    const extra = { samplingperiod: String(period), samplingmethod: String(form.get("samplingmethod") || "MONITOR") };
    const controlling = String(form.get("controllingPV") || "").trim();
    if (controlling) {
      if (!AA.validName(controlling)) throw new Error(`Not a valid PV name: ${controlling}`);
      extra.controllingPV = controlling;
    }
    const policy = String(form.get("policy") || "");
    if (policy) extra.policy = policy;
    await archive(extra);
  });

  action("archstatLookup", async () => {
    stopRefresh();
    const { names, notes } = await expand(namesFromBox(true));
    box.value = names.join("\n");
    sessionStorage.setItem(STORE_KEY, box.value);
    AA.message(notes.length ? notes : [`${names.length} PV name(s).`], "info");
  });

  async function pauseOrResume(actionName, word) {
    stopRefresh();
    const { names, notes } = await expand(namesFromBox(true));
    if (!names.length) throw new Error(notes.join(" ") || "No PVs to act on.");
    const t = tally(await postInChunks(actionName, names), word);
    AA.message(notes.concat(t.lines), t.problems ? "error" : "ok");
    await startStatus(names);
  }

  action("archstatPause", () => pauseOrResume("pauseArchivingPV", "paused"));
  action("archstatResume", () => pauseOrResume("resumeArchivingPV", "resumed"));

  action("archstatDelete", async () => {
    stopRefresh();
    const { names, notes } = await expand(namesFromBox(true));
    if (!names.length) throw new Error(notes.join(" ") || "No PVs to delete.");
    const dialog = document.getElementById("deleteDialog");
    document.getElementById("deleteWhich").textContent = names.length === 1
      ? names[0] : `${names.length} PVs: ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""}`;
    document.getElementById("deleteDataCheckbox").checked = false;
    const form = await AA.ask(dialog);
    if (!form) return;
    const deleteData = form.get("deleteData") === "true" ? "true" : "false";
    // sort by status first: requests still in the workflow are aborted (there is nothing
    // to delete yet), unknown names are skipped, the rest are paused (the server deletes
    // only paused PVs; "already paused" answers are fine) and then deleted
    const status = new Map();
    for (const part of AA.chunks(names, 500)) {
      for (const r of AA.asList(await AA.bplPost("getPVStatus", part))) status.set(String(r.pvName), r.status);
    }
    const pending = names.filter((n) => status.get(n) === "Initial sampling");
    const unknown = names.filter((n) => status.get(n) === "Not being archived");
    const archived = names.filter((n) => !pending.includes(n) && !unknown.includes(n));
    const failed = [];
    for (const pv of pending) {
      const r = await AA.bpl("abortArchivingPV", { pv });
      if (r && r.status !== "ok") failed.push(`${pv}: ${r.desc || r.validation || r.status}`);
    }
    if (archived.length) await postInChunks("pauseArchivingPV", archived);
    let done = 0;
    const results = await AA.pool(archived, DELETE_PARALLEL, async (pv) => {
      const r = await AA.bpl("deletePV", { pv, deleteData });
      done += 1;
      if (done % 100 === 0) AA.message(`Deleted ${done} of ${archived.length}...`, "info");
      return r;
    });
    results.forEach((r, i) => {
      if (!r.ok) failed.push(`${archived[i]}: ${r.error.message}`);
      else if (r.value && r.value.validation) failed.push(`${archived[i]}: ${r.value.validation}`);
    });
    const lines = [];
    const deleted = archived.length - results.filter((r) => !r.ok || (r.value && r.value.validation)).length;
    if (archived.length) lines.push(`Deleted ${deleted} PV(s)${deleteData === "true" ? " and their data" : " (data kept)"}.`);
    if (pending.length) lines.push(`Aborted ${pending.length} request(s) still in initial sampling.`);
    if (unknown.length) lines.push(`Not archived, nothing to delete: ${unknown.slice(0, 10).join(", ")}${unknown.length > 10 ? ", ..." : ""}`);
    lines.push(...failed.slice(0, 20));
    AA.message(lines, failed.length ? "error" : "ok");
    await startStatus(names);
  });

  // pvdetails.html links back with ?pv= after a delete; show that PV's status at once
  const asked = AA.params().get("pv");
  if (asked && AA.validName(asked)) {
    if (!box.value.trim()) box.value = asked;
    startStatus([asked]);
  }
})();
